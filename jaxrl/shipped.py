"""Where the shipped configs (`hydra_conf/`) and market data (`data/`) are: in a checkout or in an installed wheel.

In the checkout (and an editable install of it) they sit at the repository root, next to the `jaxrl` package. A
wheel carries them inside the package as `jaxrl/share/hydra_conf` and `jaxrl/share/data` (pyproject.toml maps the
root folders there), and Hydra reads the configs through its `pkg://jaxrl.share.hydra_conf` search path. Either
way `SHIPPED_ROOT` is the folder holding both, so a config's `data/SPY_daily.csv` resolves against it.

Standard library only: every command line imports this before deciding what else it needs.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
WHEEL_ROOT = PACKAGE_DIR / "share"  # hydra_conf/ and data/ as a wheel installs them
CHECKOUT_ROOT = PACKAGE_DIR.parent  # the repository root, when jaxrl is imported from a checkout
CONFIG_PACKAGE = "jaxrl.share.hydra_conf"  # the configs as a package: Hydra's pkg:// source (it needs __init__.py)


def _shipped_root() -> Path:
    # The wheel's copy first: it exists only in an installed wheel, never in a checkout, so an installed jaxrl can
    # never pick up an unrelated hydra_conf/ that happens to sit next to site-packages.
    for root in (WHEEL_ROOT, CHECKOUT_ROOT):
        if (root / "hydra_conf" / "config.yaml").is_file():
            return root
    raise ImportError(f"jaxrl's shipped configs are missing: neither {WHEEL_ROOT / 'hydra_conf'} (an installed "
                      f"wheel) nor {CHECKOUT_ROOT / 'hydra_conf'} (a checkout) holds config.yaml; reinstall jaxrl "
                      "from a wheel or a git URL, or run it from its repository")


SHIPPED_ROOT = _shipped_root()
IN_WHEEL = SHIPPED_ROOT == WHEEL_ROOT
CONFIG_DIR = SHIPPED_ROOT / "hydra_conf"
DATA_DIR = SHIPPED_ROOT / "data"
# What `@hydra.main(config_path=...)` is given. Installed, the package itself (`pkg://`), as Hydra finds configs
# shipped in a library; in a checkout the folder, so a worktree's own configs win over any editable install's.
# Either way `--config-dir DIR` adds a user's folder in front of it (its configs override shipped ones of the same
# name) and `--config-path`/`--config-name` replace the primary config.
HYDRA_CONFIG_PATH = f"pkg://{CONFIG_PACKAGE}" if IN_WHEEL else str(CONFIG_DIR)
