#!/usr/bin/env bash
# P4Q. Domain generalization: evaluate on imagenetv2, imagenet_sketch, imagenet_a or imagenet_r. Usage: dg_test.sh <dataset> <seed> [options]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_target_test "${CFG_DG:-$CFG_XD}" "$@"
