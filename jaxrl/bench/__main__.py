"""`python -m jaxrl.bench` (see jaxrl/bench/__init__.py)."""

from jaxrl.bench import cli

if __name__ == "__main__":
    cli()
