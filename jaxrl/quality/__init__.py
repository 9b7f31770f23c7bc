"""The learning-quality benchmark: markets with a known answer, their oracles, and how close trained agents get.

`python -m jaxrl.quality` (see `__main__`) trains every learner on every market at every cost through the normal
pipeline and reports, per cell, the fraction of the oracle, flat collapse, turnover against the oracle's, the
validation-to-gate rank correlation and, on the controls, how often anything passes the gate.
"""
