"""Not code: marks the configs as the package `jaxrl.share.hydra_conf` in a wheel (pyproject.toml maps this folder
there), since Hydra's `pkg://` config source reads only packages that have an `__init__.py`."""
