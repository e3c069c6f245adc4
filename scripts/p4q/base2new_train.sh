#!/usr/bin/env bash
# P4Q. Base-to-new: train on the base classes. Usage: base2new_train.sh <dataset> <seed> [--data DIR] [--cfg NAME] [KEY VALUE ...]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_base2new_train "$@"
