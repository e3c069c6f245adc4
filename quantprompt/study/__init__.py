"""``quantprompt study``: the papers' claims as a pre-registered, paired, multi-seed study in the demo world.

``protocol`` reads the pre-registered protocol (configs/study/claims.yaml), ``plan`` turns it into script calls
run by ``quantprompt.grid``, ``analysis`` pairs the runs and gives each claim its interval and verdict, ``report``
writes markdown, CSV and figures. See docs/claims.md.
"""
