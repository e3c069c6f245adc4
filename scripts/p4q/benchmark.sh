#!/usr/bin/env bash
# P4Q. A whole benchmark: every dataset x seed (SEEDS, default "1 2 3"). Usage: benchmark.sh base2new|xd|dg|fewshot [datasets...] [options]
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_benchmark "$(dirname "${BASH_SOURCE[0]}")" "$@"
