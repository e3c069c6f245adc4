"""Benchmark grids: every method x dataset x seed [x shots] run of a setting, on one machine or a cluster.

The grid is defined in :mod:`.plan`; each run is a call of a per-setting script (``scripts/<method>/*.sh``),
which holds the ``train.py`` command line and the skip/resume rules. Launchers: :mod:`.local` (N at a time,
one GPU each) and :mod:`.slurm` (a job array through submitit). Light at import: submitit and torch are
imported only by the launcher that needs them.

>>> from quantprompt.grid import expand
>>> [c.label for c in expand("base2new", ["qcoop"], ["caltech101"], ["1"])]
['qcoop base2new_train caltech101 1', 'qcoop base2new_test caltech101 1']
"""

from __future__ import annotations

from .plan import SETTINGS, Call, Grid, GridError, Run, expand, plan_grid

__all__ = ["SETTINGS", "Call", "Grid", "GridError", "Run", "expand", "plan_grid"]
