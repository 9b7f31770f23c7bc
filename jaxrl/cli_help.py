"""`--help` of the Hydra command lines (`jaxrl-train`, `jaxrl-backtest`, `jaxrl-combos`, `jaxrl-synth`), answered
without Hydra.

Hydra's own app help lists every config group by building a fresh config repository per group, each a deep copy of
the config store with every installed plugin's schemas (Ray, submitit, Optuna, ...): over a second of CPU before any
jaxrl code runs. The groups are folders of YAML files, so this reads the folders: the shipped `hydra_conf/` and any
`--config-dir` the user adds, the default of each group taken from the primary config's `defaults:` list.
`--cfg job` still prints the composed config and `--hydra-help` Hydra's flags.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import yaml

from jaxrl.shipped import CONFIG_DIR

HELP_FLAGS = ("--help", "-h")
CONFIG_DIR_FLAGS = ("--config-dir", "-cd")


def user_config_dirs(argv: Sequence[str]) -> list[Path]:
    """The folders `--config-dir DIR` / `-cd DIR` / `--config-dir=DIR` add, in order."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in CONFIG_DIR_FLAGS and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]).expanduser())
        elif "=" in arg and arg.split("=", 1)[0] in CONFIG_DIR_FLAGS:
            dirs.append(Path(arg.split("=", 1)[1]).expanduser())
    return dirs


def config_groups(dirs: Sequence[Path]) -> dict[str, list[str]]:
    """{group: sorted option names} over the folders (nested groups as `a/b`); Hydra's own `hydra/` is left out."""
    groups: dict[str, set[str]] = {}
    for root in dirs:
        for path in root.rglob("*.yaml"):
            group = path.parent.relative_to(root).as_posix()
            if group != "." and group.split("/")[0] != "hydra":
                groups.setdefault(group, set()).add(path.stem)
    return {group: sorted(options) for group, options in sorted(groups.items())}


def default_options(dirs: Sequence[Path], config_name: str) -> dict[str, str]:
    """{group: option} of the primary config's `defaults:` list (from the first folder holding it, as Hydra)."""
    for root in dirs:
        path = root / f"{config_name}.yaml"
        if path.is_file():
            defaults = (yaml.safe_load(path.read_text()) or {}).get("defaults") or []
            return {str(k).removeprefix("override "): str(v) for entry in defaults if isinstance(entry, dict)
                    for k, v in entry.items()}
    return {}


def help_text(prog: str, summary: str, config_name: str, argv: Sequence[str]) -> str:
    dirs = [CONFIG_DIR, *user_config_dirs(argv)]  # Hydra's search order
    defaults = default_options(dirs, config_name)
    lines = [f"{prog}: {summary}", "",
             f"usage: {prog} [--debug] [--config-dir DIR] [group=option ...] [key=value ...]", "",
             f"Config groups (group=option; * = default of {config_name}.yaml), from {', '.join(map(str, dirs))}:"]
    for group, options in config_groups(dirs).items():
        marked = [f"{o}*" if defaults.get(group) == o else o for o in options]
        lines.append(f"  {group}: {', '.join(marked)}")
    commands = [(f"{prog} --cfg job [overrides]", "print the composed config without running"),
                (f"{prog} --multirun a=1,2 ...", "one job per combination (Hydra's sweeper and launcher)"),
                (f"{prog} --config-dir DIR", "add your own configs (new options such as DIR/data/mine.yaml)"),
                (f"{prog} --hydra-help", "Hydra's own flags"),
                ("--debug", "show the traceback of a user error")]
    width = max(len(command) for command, _ in commands)
    lines += ["", "Override any key of the composed config (agent.total_timesteps=100000, +new.key=1, ~key to delete).",
              *(f"  {command:<{width}}  {what}" for command, what in commands)]
    return "\n".join(lines)


def answer_help(script: str, summary: str, config_name: str, argv: list[str] | None = None) -> bool:
    """Print the help and return True when `argv` (default sys.argv[1:]) asks for it. `script` is the console
    script (`jaxrl-train`); started as `python -m jaxrl.train`, the help names that instead."""
    argv = sys.argv[1:] if argv is None else argv
    if not any(arg in HELP_FLAGS for arg in argv):
        return False
    prog = script if Path(sys.argv[0]).name == script else f"python -m jaxrl.{script.removeprefix('jaxrl-')}"
    print(help_text(prog, summary, config_name, argv))
    return True
