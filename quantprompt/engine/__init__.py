"""Built-in runner that implements the part of Dassl.pytorch's API used by ``trainers/`` and ``datasets/``.

Trainers and datasets never import this package directly: they import from
:mod:`quantprompt.engine.compat`, which hands out real Dassl when it is installed and these classes otherwise.
"""
