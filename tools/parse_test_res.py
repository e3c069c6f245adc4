#!/usr/bin/env python
"""Average test results over seeds (CoOp's usage) or build paper-like tables from an output tree.

CoOp's usage, unchanged::

    python tools/parse_test_res.py output/base2new/train_base/caltech101/shots_16/QCoOp/vit_b16_c4
    python tools/parse_test_res.py output/base2new/test_new/caltech101/shots_16/QCoOp/vit_b16_c4 --test-log
    python tools/parse_test_res.py output/my_experiment --multi-exp [--ci95]

Tables (rows = methods, columns = datasets + average)::

    python tools/parse_test_res.py output --table base2new --format github
    python tools/parse_test_res.py output --table xd --format latex --ci95 --spread
    python tools/parse_test_res.py output --table --strict        # every setting found; exit 1 on warnings

Paired differences of every method against a baseline (mean, 95% Student-t CI, n, p; unmatched units listed)::

    python tools/parse_test_res.py output --table base2new --compare CoOp --format github
    python tools/parse_test_res.py output --table fewshot --compare CoOp --holm
"""

import sys

from quantprompt.clierrors import run_cli
from quantprompt.results.parse import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
