"""CoOp's ``trainers`` package, kept for this repository's layout (``train.py`` imports it as CoOp's does).

The classes live in the installed package, :mod:`quantprompt.dassl_plugin`, so that a foreign CoOp, MaPLe or
PromptSRC checkout (whose own ``trainers`` package takes this name) can import them too. Importing this
package registers all of them in ``TRAINER_REGISTRY``, the baselines included (where a pipeline registered its
own baseline first, that one is kept, with one warning); this is a re-export, not a second copy of any class.
"""

from quantprompt.dassl_plugin import *  # noqa: F401,F403
from quantprompt.dassl_plugin import __all__, register_all  # noqa: F401  (the same public names)

register_all(include_baselines=True)
