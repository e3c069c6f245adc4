#!/usr/bin/env bash
# P4Q. Cross-dataset transfer: evaluate the ImageNet model on a target dataset. Usage: xd_test.sh <dataset> <seed> [source-dataset] [options]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_target_test "$CFG_XD" "$@"
