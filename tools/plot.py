#!/usr/bin/env python
"""The paper's figures as PNG, one command per figure.

    python tools/plot.py fewshot output -o fig5_fewshot.png                      # Fig. 5
    python tools/plot.py epochs output/base2new/train_base -o fig2_noise.png     # Figs. 2 / 7
    python tools/plot.py epochs --run "std 0.01=out/a/seed1" --run "std 0.1=out/b/seed1" -o fig2.png
    python tools/plot.py hist output/.../seed1 -o fig3_hist.png [--epochs 0 1 5 10]   # Fig. 3
    python tools/plot.py kl output/.../seed1 [more runs] -o fig6_kl.png                # Fig. 6

``epochs`` needs runs trained with ``TEST.PER_EPOCH True``; ``hist`` and ``kl`` need
``TRAIN.SAVE_PROMPT_SNAPSHOTS True`` (see the README, "Results and figures").
"""

import sys

from quantprompt.clierrors import run_cli
from quantprompt.results.plotcli import main

if __name__ == "__main__":
    sys.exit(run_cli(main))
