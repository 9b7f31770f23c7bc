"""`python -m jaxrl.synth` (the `jaxrl-synth` console script)."""

from jaxrl.synth.run import cli

cli()
