#!/usr/bin/env bash
# P4Q. Cross-dataset transfer: train on ImageNet (16 shots). Usage: xd_train.sh <seed> [source-dataset] [options] [KEY VALUE ...]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_source_train "$CFG_XD" "$@"
