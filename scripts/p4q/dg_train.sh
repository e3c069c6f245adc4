#!/usr/bin/env bash
# P4Q. Domain generalization: train on ImageNet (same run as xd_train.sh). Usage: dg_train.sh <seed> [options]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_source_train "${CFG_DG:-$CFG_XD}" "$@"
