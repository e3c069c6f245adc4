#!/usr/bin/env bash
# P4Q. Base-to-new: evaluate the base-trained model on the new classes. Usage: base2new_test.sh <dataset> <seed> [new|base] [options] [KEY VALUE ...]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_base2new_test "$@"
