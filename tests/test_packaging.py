"""Packaging: the wheel carries the configs and the shipped data, its console scripts train and backtest from a fresh
venv outside the checkout, and `--config-dir` adds a user's configs (checkout and wheel alike)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path


from jaxrl import shipped
from jaxrl.cli_help import answer_help
from jaxrl.experiment import PROJECT_ROOT

SOURCES = ("pyproject.toml", "README.md", "jaxrl", "hydra_conf", "data")  # what a wheel is built from
MAPPED = {"jaxrl.share.hydra_conf": "hydra_conf", "jaxrl.share.data": "data"}
# A tiny training (README's `tiny` shrink set, PPO only) and no plots: the test checks wiring, not learning.
TINY = ["env.window=8", "env.episode_len=32", "run.chunk_updates=2", "selection.eval_every=2", "run.plots=false",
        "agent.num_envs=8", "agent.num_steps=16", "agent.total_timesteps=768", "agent.num_minibatches=2",
        "agent.hidden=[16]", f"compilation_cache={os.environ.get('JAXRL_TEST_XLA_CACHE') or 'null'}"]
MINE = "symbol: MINE\npath: data/mine.csv\nasset_class: tradefi\n"  # a user's data config (hydra_conf/data/*.yaml)


def _pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def _source_files(root: Path, folder: str) -> set[str]:
    return {p.relative_to(root).as_posix() for p in (root / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}


def _user_config_dir(tmp: Path) -> Path:
    (tmp / "user_conf" / "data").mkdir(parents=True)
    (tmp / "user_conf" / "data" / "mine.yaml").write_text(MINE)
    return tmp / "user_conf"


def test_the_package_list_holds_every_package():
    """pyproject.toml lists the packages (the mapped config and data folders cannot be found): a new subpackage
    left out of the list would be missing from every wheel."""
    tool = _pyproject()["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(PROJECT_ROOT).parts) for p in (PROJECT_ROOT / "jaxrl").rglob("__init__.py")}
    assert set(tool["packages"]) == found | set(MAPPED)
    assert tool["package-dir"] == MAPPED


def test_every_console_script_is_a_python_m_command():
    """Each `jaxrl-X` script points at a callable of the module `python -m jaxrl.X` runs (or its package)."""
    scripts = _pyproject()["project"]["scripts"]
    readme_commands = {name.split(".")[-1] for name in  # python -m jaxrl.data.fetch is jaxrl-fetch
                       re.findall(r"python -m jaxrl\.([a-z_.]*[a-z_])", (PROJECT_ROOT / "README.md").read_text())}
    assert {f"jaxrl-{name}" for name in readme_commands} <= set(scripts)
    for script, target in scripts.items():
        module, function = target.split(":")
        name = script.removeprefix("jaxrl-")  # jaxrl-fetch is python -m jaxrl.data.fetch
        assert module.removesuffix(".__main__").removesuffix(".run").removesuffix(".cli") in (
            f"jaxrl.{name}", f"jaxrl.data.{name}"), script
        assert importlib.util.find_spec(module) is not None, target


def test_the_checkout_reads_its_own_configs():
    assert shipped.SHIPPED_ROOT == PROJECT_ROOT and not shipped.IN_WHEEL
    assert shipped.HYDRA_CONFIG_PATH == str(PROJECT_ROOT / "hydra_conf")
    assert (shipped.DATA_DIR / "SPY_daily.csv").is_file()


def test_help_lists_the_groups_with_their_defaults_and_a_user_config_dir(tmp_path, capsys):
    user = _user_config_dir(tmp_path)
    assert not answer_help("jaxrl-train", "train", "config", ["agent=bc"])
    assert answer_help("jaxrl-train", "train", "config", ["--config-dir", str(user), "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert "  data: basket, btc, doge, ewj, gold, mine, qqq, spy*" in lines
    assert "  agent: bc, cql, iql, ppo*, rebrac, td3bc" in lines
    assert not any(line.startswith("  hydra/") for line in lines)


def test_config_dir_adds_a_users_config_option(tmp_path):
    """Hydra's `--config-dir` puts a user's folder on the search path: its data/mine.yaml is `data=mine`."""
    user = _user_config_dir(tmp_path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-m", "jaxrl.train", "--config-dir", str(user), "data=mine", "--cfg", "job"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "symbol: MINE" in done.stdout and "path: data/mine.csv" in done.stdout


# ---- the wheel ------------------------------------------------------------------------------------------------------
def _build_wheel(tmp: Path) -> Path:
    """A wheel of a clean copy of the sources (no stale build/ folder can leak into it). Without build isolation
    when this Python has the build backend (no network); else pip fetches it, as `pip install git+URL` does."""
    src = tmp / "src"
    src.mkdir(parents=True)
    for name in SOURCES:
        if (PROJECT_ROOT / name).is_dir():
            shutil.copytree(PROJECT_ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(PROJECT_ROOT / name, src / name)
    backend = all(importlib.util.find_spec(name) for name in ("setuptools", "wheel"))
    isolation = ["--no-build-isolation"] if backend else []
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(tmp / "dist"),
                           str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (wheel,) = (tmp / "dist").glob("jaxrl-*.whl")
    return wheel


def _install(wheel: Path, tmp: Path) -> Path:
    """The venv's bin folder: the wheel installed with --no-deps into a fresh venv that sees this Python's packages
    (jax, flax, hydra, ...), so nothing is downloaded."""
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(tmp / "venv")
    bin_dir = tmp / "venv" / ("Scripts" if os.name == "nt" else "bin")
    done = subprocess.run([sys.executable, "-m", "pip", "--python", str(bin_dir / "python"), "install", "--no-deps",
                           "--no-index", str(wheel)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "no such option: --python" in done.stderr:  # pip < 22.3: the venv's own pip
        venv.EnvBuilder(system_site_packages=True, with_pip=True).create(tmp / "venv")
        done = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                              capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return bin_dir


def _run(bin_dir: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing may lead back to the checkout
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _check_contents(wheel: Path) -> None:
    """Every module, config and data file of the checkout is in the wheel, and every console script."""
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {p for p in _source_files(PROJECT_ROOT, "jaxrl") if p.endswith(".py")}
    expected |= {f"jaxrl/share/{p}" for folder in ("hydra_conf", "data") for p in _source_files(PROJECT_ROOT, folder)}
    assert expected <= names, sorted(expected - names)
    entry_points = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert all(f"{script} = " in entry_points for script in _pyproject()["project"]["scripts"])


def test_the_wheel_trains_and_backtests_outside_the_checkout(tmp_path):
    """One test (not a shared fixture), so pytest-xdist never builds the wheel twice."""
    assert PROJECT_ROOT not in tmp_path.parents
    wheel = _build_wheel(tmp_path / "build")
    _check_contents(wheel)
    bin_dir = _install(wheel, tmp_path / "build")
    work = tmp_path / "work"  # the commands run from here: neither the checkout nor the build folder
    work.mkdir()
    where = _run(bin_dir, [str(bin_dir / "python"), "-c", "import jaxrl, jaxrl.shipped as s; "
                           "print(jaxrl.__file__); print(s.IN_WHEEL, s.HYDRA_CONFIG_PATH)"], work)
    assert where.returncode == 0, where.stderr
    module_file, wheel_paths = where.stdout.splitlines()
    assert Path(module_file).resolve().is_relative_to(bin_dir.parent.resolve()), module_file  # not the checkout
    assert wheel_paths == "True pkg://jaxrl.share.hydra_conf"

    helped = _run(bin_dir, ["jaxrl-train", "--help"], work)
    assert helped.returncode == 0 and "usage: jaxrl-train" in helped.stdout, helped.stderr
    user = _user_config_dir(work)  # --config-dir next to the pkg:// configs
    composed = _run(bin_dir, ["jaxrl-train", "--config-dir", str(user), "data=mine", "--cfg", "job"], work)
    assert composed.returncode == 0 and "symbol: MINE" in composed.stdout, composed.stderr

    trained = _run(bin_dir, ["jaxrl-train", *TINY], work)  # data=spy: the wheel's own data/SPY_daily.csv
    assert trained.returncode == 0, trained.stdout[-2000:] + trained.stderr[-3000:]
    (run_dir,) = work.glob("runs/*/*_SPY_position_ppo_s0")
    assert (run_dir / "gate.json").is_file()
    shipped_spy = Path(module_file).parent / "share" / "data" / "SPY_daily.csv"  # the wheel's copy, not the checkout's
    assert f"path: {shipped_spy}" in (run_dir / "config.yaml").read_text()

    tested = _run(bin_dir, ["jaxrl-backtest", "data=spy", "policy=buy_and_hold", "plots=false"], work)
    assert tested.returncode == 0, tested.stdout[-2000:] + tested.stderr[-3000:]
    assert len(list(work.glob("backtests/*/*_SPY_buy_and_hold/gate.json"))) == 1
    assert (work / "registry" / "scoreboard.json").is_file()


def test_the_startup_benchmark_records_the_median_help_time(tmp_path):
    import jaxrl.bench as bench

    (record,) = bench.main(["--quick", "--out", str(tmp_path / "bench.json"), "--only", "startup/train_help"])
    assert record["name"] == "startup/train_help" and len(record["all_s"]) == 3
    assert record["median_s"] == record["run_s"] and abs(record["median_s"] - sorted(record["all_s"])[1]) < 1e-3
