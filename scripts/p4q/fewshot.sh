#!/usr/bin/env bash
# P4Q. Few-shot learning (CoOp's scripts/coop/main.sh tree). Usage: fewshot.sh <dataset> <shots> <seed> [options]; NCTX, CSC, CTP env as CoOp
# Dataset root: DATA=/path/to/datasets or --data DIR. Runnable from any directory.
source "$(dirname "${BASH_SOURCE[0]}")/method.sh"
qp_fewshot "$@"
