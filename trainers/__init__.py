"""CoOp's ``trainers`` package, kept for this repository's layout (``train.py`` imports it as CoOp's does).

The classes live in the installed package, :mod:`quantprompt.dassl_plugin`, so that a foreign CoOp, MaPLe or
PromptSRC checkout (whose own ``trainers`` package takes this name) can import them too. Importing this
package registers them in ``TRAINER_REGISTRY``; this is a re-export, not a second copy of any class.
"""

from quantprompt.dassl_plugin import *  # noqa: F401,F403  (registration happens on import)
from quantprompt.dassl_plugin import __all__  # noqa: F401
