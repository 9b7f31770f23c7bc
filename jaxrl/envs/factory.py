"""`make(name, data=...)`: an environment and its params in the manner of `gymnax.make`, from jaxrl's config.

    env, env_params = jaxrl.envs.make("position", data="spy", window=8)
    obs, state = env.reset(key, env_params)

The env is built the way a training run builds it: `hydra_conf/config.yaml` composed with `env=<name>`,
`data=<data>`, `env.<key>=<value>` for each keyword and any further Hydra `overrides`; then the config's data
(`jaxrl.data.from_config.load_data`) and the registered builder (`make_env`). A name with no `env/` config and no
registration is one of gymnax's own environments (`gymnax.make`, with image observations flattened).

Not done here, because they belong to the training pipeline above this package: the typed config check
(`jaxrl.config.validate_config`, run by `python -m jaxrl.train`) and synthetic training data
(`data.train_source=synthetic|mix`, refused here). The env's own checks (unknown settings, data it cannot trade) run.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from jaxrl.data.from_config import load_data
from jaxrl.envs.builtin import is_trading_env, make_env
from jaxrl.envs.gymnax_tasks import make_gymnax_task
from jaxrl.envs.registry import env_entry, registered_envs
from jaxrl.errors import UserError
from jaxrl.shipped import CONFIG_DIR



def override_value(value: Any) -> str:
    """`value` in Hydra's override grammar (numbers, booleans, null, quoted strings, lists, dicts)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(override_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{key}:{override_value(item)}" for key, item in value.items()) + "}"
    raise TypeError(f"env setting {value!r}: expected a number, bool, None, string, list or dict")


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """`hydra_conf/config.yaml` with `overrides`, under the running Hydra app when there is one (a jaxrl command),
    else under a temporary one."""
    # Hydra is imported here, not with `jaxrl.envs`: a gymnax-style user of the envs never pays for it.
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose(config_name="config", overrides=list(overrides))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def make(name: str, data: str | None = None, *, overrides: Sequence[str] = (), **settings: Any) -> tuple[Any, Any]:
    """(env, env_params) of the environment `name` (an `env/` config: position, portfolio, exit, funding, cartpole,
    ...; or a gymnax environment id such as `CartPole-v1`), on the data config `data` (spy, btc, basket, ...; default:
    the config's), with `settings` as `env.<key>=<value>` and `overrides` (e.g. `["gate.years=3", "preset=crypto"]`)."""
    if not (CONFIG_DIR / "env" / f"{name}.yaml").exists():
        if env_entry(name) is not None:
            raise UserError(f"env {name!r} is registered but has no config {CONFIG_DIR / 'env' / (name + '.yaml')}: "
                            f"build it with jaxrl.envs.make_env(settings, market)")
        if data is not None or settings or overrides:
            raise UserError(f"env {name!r} has no config in {CONFIG_DIR / 'env'} (jaxrl's: "
                            f"{', '.join(registered_envs())}); a gymnax environment takes no data= or settings")
        return make_gymnax_task(name)
    cfg = compose_config([f"env={name}", *([f"data={data}"] if data is not None else []),
                          *(f"++env.{key}={override_value(value)}" for key, value in settings.items()), *overrides])
    source = cfg.data.get("train_source", "real")
    if source != "real":
        raise UserError(f"data.train_source={source}: synthetic training data is built by the training pipeline "
                        f"(python -m jaxrl.train); jaxrl.envs.make builds the env on real data")
    env_cfg = OmegaConf.to_container(cfg.env, resolve=True)
    market = load_data(cfg) if is_trading_env(env_cfg["name"]) else None
    return make_env(env_cfg, market)
