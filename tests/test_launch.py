"""Launch files: SkyPilot task YAMLs against SkyPilot's schema, what their scripts really run, the Hydra launcher
configs, launch/vast.sh and the multi-node environment parsing. Nothing here rents or starts anything."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import time
import warnings

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from jaxrl.experiment import PROJECT_ROOT

LAUNCH = PROJECT_ROOT / "launch"
CONF = PROJECT_ROOT / "hydra_conf"
SKY_FILES = ["train.sky.yaml", "combos.sky.yaml", "managed_combos.sky.yaml", "train_multinode.sky.yaml"]

# ---- SkyPilot's task schema, the part these files use --------------------------------------------------------------
# Transcribed from skypilot-org/skypilot sky/utils/schemas.py (get_task_schema, get_resources_schema,
# _get_single_resources_schema, get_storage_schema) and docs/source/reference/yaml-spec.rst. Fields not listed are
# rejected (SkyPilot's schemas set additionalProperties: False), so a misspelt field fails here as it would there.
SKY_CLOUDS = ["aws", "azure", "gcp", "ibm", "lambda", "scp", "oci", "kubernetes", "runpod", "vast", "vsphere",
              "cudo", "fluidstack", "paperspace", "do", "nebius", "ssh", "hyperbolic"]
SIZE = {"anyOf": [{"type": "string", "pattern": r"^\d+(\.\d+)?\s*([KMGTP]B?)?$"}, {"type": "integer"}]}
SINGLE_RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "cloud": {"type": "string", "case_insensitive_enum": SKY_CLOUDS},
        "region": {"type": "string"},
        "zone": {"type": "string"},
        "infra": {"type": "string"},
        "cpus": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        "memory": {"anyOf": [{"type": "string"}, {"type": "number"}]},
        "accelerators": {"anyOf": [{"type": "string"},
                                   {"type": "object", "additionalProperties": {"anyOf": [{"type": "null"},
                                                                                          {"type": "number"}]}},
                                   {"type": "array", "items": {"type": "string"}}]},
        "instance_type": {"type": "string"},
        "use_spot": {"type": "boolean"},
        "job_recovery": {"anyOf": [
            {"type": "string"},
            {"type": "object", "additionalProperties": False, "properties": {
                "strategy": {"anyOf": [{"type": "string", "case_insensitive_enum": ["FAILOVER",
                                                                                    "EAGER_NEXT_REGION"]},
                                       {"type": "null"}]},
                "max_restarts_on_errors": {"type": "integer", "minimum": 0},
                "recover_on_exit_codes": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 255},
                                                    {"type": "array", "items": {"type": "integer"}}]},
            }},
        ]},
        "disk_size": SIZE,
        "disk_tier": {"type": "string"},
        "network_tier": {"type": "string"},
        "ports": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "array"}, {"type": "null"}]},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "image_id": {"anyOf": [{"type": "string"}, {"type": "object"}, {"type": "null"}]},
        "autostop": {"anyOf": [{"type": "boolean"}, {"type": "integer"}, {"type": "string"}, {"type": "object"}]},
        "max_hourly_cost": {"type": "number"},
    },
}
RESOURCES = {
    "type": "object",
    "additionalProperties": False,
    "properties": {**SINGLE_RESOURCES["properties"],
                   "any_of": {"type": "array", "items": SINGLE_RESOURCES},
                   "ordered": {"type": "array", "items": SINGLE_RESOURCES}},
}
STORAGE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "source": {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        "store": {"type": "string", "case_insensitive_enum": ["s3", "gcs", "azure", "r2", "ibm", "oci", "nebius",
                                                              "coreweave", "volume"]},
        "persistent": {"type": "boolean"},
        "mode": {"type": "string", "case_insensitive_enum": ["MOUNT", "COPY", "MOUNT_CACHED"]},
        "config": {"type": "object"},
    },
}
TASK = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "workdir": {"anyOf": [{"type": "string"}, {"type": "object"}]},
        "num_nodes": {"type": "integer"},
        "resources": RESOURCES,
        "file_mounts": {"type": "object", "additionalProperties": {"anyOf": [{"type": "string"}, STORAGE]}},
        "setup": {"type": "string"},
        "run": {"type": "string"},
        "envs": {"type": "object", "additionalProperties": False,
                 "patternProperties": {r"^[a-zA-Z_][a-zA-Z0-9_]*$": {"type": ["string", "null"]}}},
        "secrets": {"type": "object"},
        "config": {"type": "object"},
        "volumes": {"type": "object"},
        "event_callback": {"type": "string"},
    },
}

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, TYPES[name])


def schema_errors(value, schema, path="$"):
    """The ways `value` breaks `schema` (a JSON-schema subset: type, properties, additionalProperties,
    patternProperties, items, anyOf, enum / case_insensitive_enum, pattern, minimum, maximum)."""
    if "anyOf" in schema:
        branches = [schema_errors(value, option, path) for option in schema["anyOf"]]
        return [] if any(not b for b in branches) else [f"{path}: matches none of {len(branches)} options: "
                                                        + "; ".join(e for b in branches for e in b[:1])]
    errors = []
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else kinds
        if not any(_is_type(value, kind) for kind in kinds):
            return [f"{path}: {value!r} is not of type {'/'.join(kinds)}"]
    if "case_insensitive_enum" in schema and str(value).lower() not in [v.lower() for v in
                                                                       schema["case_insensitive_enum"]]:
        errors.append(f"{path}: {value!r} not one of {schema['case_insensitive_enum']}")
    if "pattern" in schema and isinstance(value, str) and not re.search(schema["pattern"], value):
        errors.append(f"{path}: {value!r} does not match {schema['pattern']}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{path}: {value} < {schema['minimum']}")
    if "maximum" in schema and _is_type(value, "number") and value > schema["maximum"]:
        errors.append(f"{path}: {value} > {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        patterns = schema.get("patternProperties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            where = f"{path}.{key}"
            if key in properties:
                errors += schema_errors(item, properties[key], where)
                continue
            matched = [p for p in patterns if re.search(p, str(key))]
            for pattern in matched:
                errors += schema_errors(item, patterns[pattern], where)
            if matched:
                continue
            if extra is False:
                errors.append(f"{where}: unknown field")
            elif isinstance(extra, dict):
                errors += schema_errors(item, extra, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    return errors


def test_the_schema_checker_catches_what_skypilot_would_reject():
    good = {"name": "x", "resources": {"use_spot": True, "any_of": [{"cloud": "vast", "accelerators": "A10:1"}]},
            "envs": {"A": "1", "B": None}, "file_mounts": {"/o": {"source": "s3://b", "mode": "MOUNT_CACHED"}}}
    assert schema_errors(good, TASK) == []
    for bad, words in (({"resources": {"use_spot": "yes"}}, "use_spot"),
                       ({"resources": {"spot_recovery": "failover"}}, "unknown field"),
                       ({"resources": {"any_of": [{"cloud": "vastai"}]}}, "vastai"),
                       ({"envs": {"FRACTION": 0.9}}, "FRACTION"),
                       ({"file_mounts": {"/o": {"source": "s3://b", "mode": "SYNC"}}}, "SYNC"),
                       ({"resources": {"job_recovery": {"strategy": "FAILOVER", "max_restarts_on_errors": -1}}},
                        "max_restarts_on_errors"),
                       ({"nodes": 2}, "unknown field")):
        errors = schema_errors(bad, TASK)
        assert errors and words in " ".join(errors), (bad, errors)


def sky_task(name):
    with open(LAUNCH / name) as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("name", SKY_FILES)
def test_sky_yaml_matches_skypilot_schema_and_has_every_field_we_rely_on(name):
    task = sky_task(name)
    assert schema_errors(task, TASK) == []
    assert isinstance(task["name"], str) and task["workdir"] == "."
    resources = task["resources"]
    assert isinstance(resources["disk_size"], int) and resources["disk_size"] >= 50
    clouds = [option["cloud"] for option in resources["any_of"]]
    # only clouds that can mount the /outputs bucket: SkyPilot cannot mount buckets on Vast.ai or RunPod
    assert not {"vast", "runpod"} & set(clouds) and {"aws", "gcp"} <= set(clouds) and "lambda" in clouds
    for option in resources["any_of"]:
        assert re.fullmatch(r"[A-Za-z0-9-]+:1", option["accelerators"]), option
    # Results sync back: a bucket mounted at /outputs in a mode that supports appends and renames.
    outputs = task["file_mounts"]["/outputs"]
    assert outputs == {"source": "${OUTPUTS}", "mode": "MOUNT_CACHED"}
    assert "OUTPUTS" in task["envs"] and task["envs"]["OUTPUTS"] is None  # required: sky errors out without it
    assert 'pip install --quiet -e ".[cuda]"' in task["setup"]
    assert "SKYPILOT_TASK_ID" in task["run"] and "registry.root=/outputs/registry" in task["run"]


def test_managed_job_runs_on_spot_and_recovers():
    resources = sky_task("managed_combos.sky.yaml")["resources"]
    assert resources["use_spot"] is True
    recovery = resources["job_recovery"]
    assert recovery["strategy"] in ("FAILOVER", "EAGER_NEXT_REGION")
    assert isinstance(recovery["max_restarts_on_errors"], int) and recovery["max_restarts_on_errors"] >= 1
    assert "spot_recovery" not in resources  # the pre-0.6 name
    lambda_option = next(o for o in resources["any_of"] if o["cloud"] == "lambda")
    assert lambda_option["use_spot"] is False  # Lambda has no spot instances: an on-demand fallback


@pytest.mark.parametrize("name", SKY_FILES)
def test_sky_scripts_parse_as_bash(name, tmp_path):
    task = sky_task(name)
    for part in ("setup", "run"):
        script = tmp_path / f"{part}.sh"
        script.write_text(task[part])
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, (name, part, result.stderr)
        if shutil.which("shellcheck"):
            checked = subprocess.run(["shellcheck", "-s", "bash", "-S", "warning", str(script)],
                                     capture_output=True, text=True)
            assert checked.returncode == 0, (name, part, checked.stdout)


def _fake_executable(path, record):
    """An executable that appends its arguments (one JSON list per call) to `record` and succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'#!/usr/bin/env bash\nprintf "%s\\0" "$@" >> "{record}"\nprintf "\\n" >> "{record}"\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _calls(record):
    if not record.exists():
        return []
    return [chunk.rstrip("\0").split("\0") for chunk in record.read_text().split("\0\n") if chunk.strip()]


def _run_script(task, tmp_path, **env):
    """Run a task's `run:` with SkyPilot's variables and its envs' defaults; `python` only records its argv."""
    home, record = tmp_path / "home", tmp_path / "python-calls"
    _fake_executable(home / "jaxrl-venv" / "bin" / "python", record)
    variables = {k: v for k, v in task["envs"].items() if v is not None}
    variables.update(OUTPUTS="s3://bucket", SKYPILOT_TASK_ID="sky-managed-2026-01-01-00-00-00-000000_job_7-0",
                     HOME=str(home), PATH=os.environ["PATH"], **env)
    result = subprocess.run(["bash", "-c", task["run"]], env=variables, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return _calls(record)


def _compose(config_name, overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name=config_name, overrides=[o for o in overrides if not o.startswith("hydra.")])


def test_train_task_resumes_a_run_dir_named_by_the_task_id(tmp_path):
    task = sky_task("train.sky.yaml")
    (call,) = _run_script(task, tmp_path)
    assert call[:2] == ["-m", "jaxrl.train"]
    assert "hydra.run.dir=/outputs/runs/sky-managed-2026-01-01-00-00-00-000000_job_7-0" in call
    assert "run.resume=true" in call
    cfg = _compose("config", call[2:])  # the overrides the task passes are valid for jaxrl.train
    assert cfg.run.resume is True and cfg.registry.root == "/outputs/registry" and cfg.data.symbol == "SPY"
    (call,) = _run_script(task, tmp_path / "named", RUN_NAME="btc-5m", OVERRIDES="data=btc seed=2")
    assert "hydra.run.dir=/outputs/runs/btc-5m" in call
    assert _compose("config", call[2:]).data.symbol == "BTC"


def test_multinode_task_runs_the_same_command_on_every_node_and_joins_them(tmp_path):
    from jaxrl.distributed import distributed_args
    from jaxrl.train import non_writer_overrides

    task = sky_task("train_multinode.sky.yaml")
    assert task["num_nodes"] == 2
    nodes = {"SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2\n", "SKYPILOT_NUM_NODES": "2"}
    calls = [_run_script(task, tmp_path / f"node{rank}", SKYPILOT_NODE_RANK=str(rank), **nodes)
             for rank in range(2)]
    assert [len(c) for c in calls] == [1, 1] and calls[0] == calls[1]  # one program, started on each node
    (call,) = calls[0]
    assert call[:2] == ["-m", "jaxrl.train"] and "run.resume=true" in call
    assert "hydra.run.dir=/outputs/runs/sky-managed-2026-01-01-00-00-00-000000_job_7-0" in call
    cfg = _compose("config", call[2:])
    assert cfg.run.num_seeds % task["num_nodes"] == 0 and cfg.registry.root == "/outputs/registry"
    # what jaxrl.distributed makes of each node's environment (the task's envs plus SkyPilot's variables)
    envs = {k: str(v) for k, v in task["envs"].items() if v is not None}
    joined = [distributed_args({**envs, **nodes, "SKYPILOT_NODE_RANK": str(rank)}) for rank in range(2)]
    assert joined == [{"coordinator_address": f"10.0.0.1:{envs['JAXRL_COORDINATOR_PORT']}", "num_processes": 2,
                       "process_id": rank} for rank in range(2)]
    assert [non_writer_overrides({**envs, **nodes, "SKYPILOT_NODE_RANK": str(rank)}) for rank in range(2)] == [
        [], ["hydra.output_subdir=null", "hydra/job_logging=stdout"]]  # only the head node's Hydra writes


@pytest.mark.parametrize("name", ["combos.sky.yaml", "managed_combos.sky.yaml"])
def test_combos_tasks_run_the_runner_on_a_stable_runs_dir(name, tmp_path):
    task = sky_task(name)
    runner, shown = _run_script(task, tmp_path)
    assert runner[:2] == ["-m", "jaxrl.combos"] and shown[:2] == ["-m", "jaxrl.status"]
    runs_dir = "/outputs/combos/sky-managed-2026-01-01-00-00-00-000000_job_7-0"  # the same for every recovery
    assert f"grid.runs_dir={runs_dir}" in runner and shown[2] == runs_dir
    cfg = _compose("combos", runner[2:])
    assert list(cfg.grid.symbols) == ["spy", "qqq", "btc"] and cfg.grid.runs_dir == runs_dir
    assert cfg.registry.root == "/outputs/registry"
    (runner, _) = _run_script(task, tmp_path / "named", COMBOS_NAME="grid1")
    assert "grid.runs_dir=/outputs/combos/grid1" in runner


def test_sky_task_from_yaml_when_skypilot_is_installed(tmp_path):
    sky = pytest.importorskip("sky")
    for name in SKY_FILES:
        config = sky_task(name)
        config["envs"]["OUTPUTS"] = "s3://bucket"
        task = sky.Task.from_yaml_config(config)
        assert task.name == config["name"]


# ---- Hydra launchers and sweeper -------------------------------------------------------------------------------------
# Each composes the plugin's own config (its schema and defaults) and sets only what jaxrl needs on top. A file named
# like the plugin's config would be validated against its schema by name: a deprecation warning on every run (or, for
# the Optuna sweeper, whose schema has a defaults list, an error).
PLUGIN_CONFIGS = {  # option -> (group, the plugin's config it composes, plugin module, its class)
    "slurm_gpu": ("launcher", "submitit_slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
    "ray_gpu": ("launcher", "ray", "hydra_plugins.hydra_ray_launcher", "RayLauncher"),
    "optuna_gate": ("sweeper", "optuna", "hydra_plugins.hydra_optuna_sweeper", "OptunaSweeper"),
}


def compose_without_warnings(config_dir, overrides):
    """The training config with its hydra node, every warning an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
            return compose(config_name="config", overrides=overrides, return_hydra_config=True)


def test_hydra_launcher_configs_set_one_gpu_per_job_and_the_jax_memory_settings():
    slurm = yaml.safe_load((CONF / "hydra" / "launcher" / "slurm_gpu.yaml").read_text())
    assert slurm["defaults"] == ["submitit_slurm", "_self_"] and "_target_" not in slurm
    assert slurm["gpus_per_node"] == 1 and slurm["tasks_per_node"] == 1 and isinstance(slurm["timeout_min"], int)
    setup = slurm["setup"]
    assert "export XLA_PYTHON_CLIENT_PREALLOCATE=false" in setup
    assert any(re.fullmatch(r"export XLA_PYTHON_CLIENT_MEM_FRACTION=0?\.\d+", line) for line in setup)

    ray = yaml.safe_load((CONF / "hydra" / "launcher" / "ray_gpu.yaml").read_text())
    assert ray["defaults"] == ["ray", "_self_"] and "_target_" not in ray
    remote = ray["ray"]["remote"]
    assert remote["num_gpus"] == 1 and "address" in ray["ray"]["init"]
    env_vars = remote["runtime_env"]["env_vars"]
    assert env_vars["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert 0 < float(env_vars["XLA_PYTHON_CLIENT_MEM_FRACTION"]) <= 1
    assert all(isinstance(v, str) for v in env_vars.values())  # process environments are strings
    for name, (group, base, _, _) in PLUGIN_CONFIGS.items():  # none shadows the plugin's own config by name
        assert not (CONF / "hydra" / group / f"{base}.yaml").exists()
        assert (CONF / "hydra" / group / f"{name}.yaml").exists()


@pytest.mark.parametrize("option", sorted(PLUGIN_CONFIGS))
def test_plugin_config_composes_onto_the_plugins_schema_without_a_warning(option):
    group, base, module, cls = PLUGIN_CONFIGS[option]
    pytest.importorskip(module)
    cfg = compose_without_warnings(CONF, [f"hydra/{group}={option}"])
    node = cfg.hydra[group]
    assert node._target_.endswith(f".{cls}")
    ours = yaml.safe_load((CONF / "hydra" / group / f"{option}.yaml").read_text())
    for key, value in ours.items():  # what we set wins over the plugin's defaults
        if key != "defaults" and not isinstance(value, dict):
            assert OmegaConf.to_container(node)[key] == value, key
    if group == "launcher":  # the plugin's class takes every field (instantiating submits nothing)
        launcher = instantiate(node)
        assert type(launcher).__name__ == cls
    if option == "slurm_gpu":  # fields we leave out keep the plugin's defaults (and are passed to submitit)
        assert node.stderr_to_stdout is False and node.qos is None and node.partition is None
    if option == "optuna_gate":
        assert node.direction == "maximize" and node.study_name == "jaxrl" and node.sampler._target_.endswith("TPESampler")


@pytest.mark.parametrize("option", sorted(PLUGIN_CONFIGS))
def test_a_config_named_like_the_plugins_own_would_warn_or_fail(option, tmp_path):
    """What the check above guards against: the pre-fix layout (a file named like the plugin's config)."""
    group, base, module, _ = PLUGIN_CONFIGS[option]
    pytest.importorskip(module)
    shutil.copytree(CONF, tmp_path / "conf")
    (tmp_path / "conf" / "hydra" / group / f"{base}.yaml").write_text("n_jobs: 1\n" if group == "sweeper" else
                                                                      "timeout_min: 5\n" if base != "ray" else
                                                                      "ray: {init: {address: null}}\n")
    with pytest.raises(Exception, match="validated against ConfigStore schema with the same name"):
        compose_without_warnings(tmp_path / "conf", [f"hydra/{group}={base}"])


# ---- launch/vast.sh ----------------------------------------------------------------------------------------------
def _vast(tmp_path, *args, **env):
    bin_dir, record = tmp_path / "bin", tmp_path / "vastai-calls"
    _fake_executable(bin_dir / "vastai", record)
    variables = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), **env}
    result = subprocess.run(["bash", str(LAUNCH / "vast.sh"), *args], env=variables, capture_output=True,
                            text=True, timeout=60, cwd=PROJECT_ROOT)
    return result, _calls(record)


def test_vast_script_parses_prints_usage_and_drives_the_cli(tmp_path):
    assert subprocess.run(["bash", "-n", str(LAUNCH / "vast.sh")]).returncode == 0
    if shutil.which("shellcheck"):
        checked = subprocess.run(["shellcheck", str(LAUNCH / "vast.sh")], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout
    assert os.access(LAUNCH / "vast.sh", os.X_OK)

    result, calls = _vast(tmp_path, "--help")
    assert result.returncode == 0 and calls == []  # usage without touching vastai
    for command in ("search", "create", "setup", "train", "combos", "status", "download", "destroy"):
        assert re.search(rf"^\s+{command}\b", result.stdout, re.M), command
    result, calls = _vast(tmp_path, "launch-a-rocket")
    assert result.returncode == 2 and "unknown command" in result.stderr and calls == []
    result, calls = _vast(tmp_path, "destroy", "not-a-number")
    assert result.returncode != 0 and calls == []

    result, calls = _vast(tmp_path, "search", "gpu_name=H100_SXM num_gpus=1")
    assert result.returncode == 0 and calls == [["search", "offers", "gpu_name=H100_SXM num_gpus=1", "-o", "dph+"]]
    result, calls = _vast(tmp_path / "bid", "create", "123", VAST_BID="0.25", VAST_IMAGE="img:1")
    assert result.returncode == 0, result.stderr
    (call,) = calls
    assert call[:3] == ["create", "instance", "123"] and call[call.index("--image") + 1] == "img:1"
    assert call[call.index("--bid_price") + 1] == "0.25" and "--ssh" in call
    assert "launch/vast.sh boot" in call[call.index("--onstart-cmd") + 1]  # restarts unfinished jobs on boot
    result, calls = _vast(tmp_path / "destroy", "destroy", "42")
    assert result.returncode == 0 and calls == [["destroy", "instance", "42"]]


def _dry_run(tmp_path, *args, **env):
    """`VAST_DRY_RUN=1 launch/vast.sh ...` without any vastai on PATH: the commands it would run, as argv lists."""
    variables = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "VAST_DRY_RUN": "1", **env}
    result = subprocess.run(["bash", str(LAUNCH / "vast.sh"), *args], env=variables, capture_output=True, text=True,
                            timeout=60, cwd=PROJECT_ROOT)
    assert result.returncode == 0, result.stderr
    return [shlex.split(line[2:]) for line in result.stdout.splitlines() if line.startswith("+ ")]


def test_vast_dry_run_rents_a_slim_cuda_image_that_restarts_jobs_and_syncs_to_the_bucket(tmp_path):
    (create,) = _dry_run(tmp_path, "create", "123", JAXRL_BUCKET="s3://my-jaxrl/vast", AWS_ACCESS_KEY_ID="AKIA1",
                         AWS_SECRET_ACCESS_KEY="very-secret")
    assert create[:4] == ["vastai", "create", "instance", "123"]
    image = create[create.index("--image") + 1]
    assert image.startswith("nvidia/cuda:12.") and "-base-" in image and "pytorch" not in image.lower()
    env = create[create.index("--env") + 1].split()
    assert "JAXRL_BUCKET=s3://my-jaxrl/vast" in env and "AWS_ACCESS_KEY_ID=AKIA1" in env
    assert "AWS_SECRET_ACCESS_KEY=***" in env  # masked in what the dry run prints
    onstart = create[create.index("--onstart-cmd") + 1]
    assert subprocess.run(["bash", "-n", "-c", onstart]).returncode == 0
    assert "bash launch/vast.sh boot" in onstart and "python3-venv" in onstart
    (plain,) = _dry_run(tmp_path, "create", "123")
    assert "--env" not in plain and "--bid_price" not in plain

    (train,) = _dry_run(tmp_path, "train", "42", "data=btc", "sweep.lr=[1e-4,3e-4]", RUN_NAME="btc")
    assert train[0] == "ssh" and train[-2] == "root@ssh-host-of-42"
    remote = train[-1]
    assert "runs/vast/jobs/train-btc.cmd" in remote and "launch/vast.sh job train-btc" in remote
    setup = _dry_run(tmp_path, "setup", "42")
    assert [c[0] for c in setup] == ["ssh", "rsync", "ssh"] and "pip install --quiet -e '.[cuda]'" in setup[2][-1]
    assert _dry_run(tmp_path, "destroy", "42") == [["vastai", "destroy", "instance", "42"]]


def _wait_for(path, seconds=30):
    deadline = time.time() + seconds
    while not path.exists() and time.time() < deadline:
        time.sleep(0.2)
    return path.exists()


def test_vast_jobs_on_the_instance_record_run_resume_and_sync(tmp_path):
    """What runs on the instance, here with a fake python, aws and apt-get: the job `train` records and starts,
    then the on-start command after a reboot restarting the unfinished job with the same arguments."""
    home, fake_bin = tmp_path / "home", tmp_path / "bin"
    checkout = home / "jaxrl"
    (checkout / "launch").mkdir(parents=True)
    shutil.copy(LAUNCH / "vast.sh", checkout / "launch" / "vast.sh")
    _fake_executable(home / "jaxrl-venv" / "bin" / "python", tmp_path / "python-calls")
    _fake_executable(fake_bin / "aws", tmp_path / "aws-calls")
    _fake_executable(fake_bin / "apt-get", tmp_path / "apt-calls")
    env = {"PATH": f"{fake_bin}:{os.environ['PATH']}", "HOME": str(home), "JAXRL_BUCKET": "s3://b/vast"}
    (train,) = _dry_run(tmp_path, "train", "42", "data=btc", "sweep.lr=[1e-4,3e-4]", RUN_NAME="btc")
    (checkout / "registry").mkdir()
    started = subprocess.run(["bash", "-c", train[-1]], env=env, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0 and "started: train-btc" in started.stdout, started.stderr
    jobs = checkout / "runs" / "vast" / "jobs"
    assert _wait_for(jobs / "train-btc.done"), (checkout / "runs" / "vast" / "train-btc.log").read_text()
    expected = ["-m", "jaxrl.train", "data=btc", "sweep.lr=[1e-4,3e-4]", "run.resume=true",
                "hydra.run.dir=runs/vast/btc"]
    assert _calls(tmp_path / "python-calls") == [expected]
    assert sorted(_calls(tmp_path / "aws-calls")) == [
        ["s3", "sync", "--only-show-errors", "registry", "s3://b/vast/registry"],
        ["s3", "sync", "--only-show-errors", "runs", "s3://b/vast/runs"]]

    # A reboot before the job finished: the on-start command installs what the base image lacks, restarts it.
    (jobs / "train-btc.done").unlink()
    (create,) = _dry_run(tmp_path, "create", "123")
    onstart = create[create.index("--onstart-cmd") + 1]
    booted = subprocess.run(["bash", "-c", onstart], env=env, capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert booted.returncode == 0 and "restarting train-btc" in booted.stdout, booted.stderr
    assert _wait_for(jobs / "train-btc.done")
    assert _calls(tmp_path / "python-calls") == [expected, expected]  # the same run dir, run.resume=true
    if shutil.which("rsync") is None:  # a slim base: the packages come from apt
        assert any("install" in call and "python3-venv" in call for call in _calls(tmp_path / "apt-calls"))
    subprocess.run(["bash", "-c", f"cd {checkout} && bash launch/vast.sh boot"], env=env, check=True, timeout=60)
    time.sleep(1)
    assert len(_calls(tmp_path / "python-calls")) == 2  # a finished job is not started again


# ---- Dockerfile ---------------------------------------------------------------------------------------------------
DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def _docker_usable():
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=60).returncode == 0


def dockerfile_instructions(text):
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, rest = (pending + line).partition(" ")
        lines.append((instruction.upper(), rest.strip()))
        pending = ""
    return lines


def test_dockerfile_installs_the_project_on_a_slim_cuda_base():
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    args = dict(rest.split("=", 1) for kind, rest in steps if kind == "ARG" and "=" in rest)
    assert re.fullmatch(r"nvidia/cuda:12\.[\d.]+-base-ubuntu\d+\.\d+", args["CUDA_BASE"])  # no PyTorch, no toolkit
    assert ("FROM", "${CUDA_BASE}") in steps and args["JAX_EXTRA"] == "cuda"
    for kind, rest in steps:
        if kind == "COPY":  # everything it copies is in the checkout
            for source in rest.split()[:-1]:
                assert (PROJECT_ROOT / source).exists(), source
    copied = {rest.split()[0] for kind, rest in steps if kind == "COPY"}
    assert {"jaxrl", "hydra_conf", "data"} <= copied  # the package finds its configs and shipped data
    runs = " ".join(rest for kind, rest in steps if kind == "RUN")
    assert 'pip install -e ".${JAX_EXTRA:+[$JAX_EXTRA]}"' in runs and "python -m jaxrl.train --help" in runs
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().split()
    assert {".git", "runs", "registry", "multirun"} <= set(ignored) and "jaxrl" not in ignored
    if shutil.which("hadolint"):
        checked = subprocess.run(["hadolint", str(DOCKERFILE)], capture_output=True, text=True)
        assert checked.returncode == 0, checked.stdout


def test_dockerfile_passes_docker_build_check():
    if not _docker_usable():
        pytest.skip("docker is not usable here (no docker CLI or no daemon)")
    checked = subprocess.run(["docker", "build", "--check", str(PROJECT_ROOT)], capture_output=True, text=True,
                             timeout=600)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dockerfile_builds_a_cpu_image_that_runs_the_trainer():
    if os.environ.get("JAXRL_TEST_DOCKER_BUILD") != "1" or not _docker_usable():
        pytest.skip("set JAXRL_TEST_DOCKER_BUILD=1 with a usable docker (pulls the CUDA base and the wheels: "
                    "network, minutes)")
    tag = "jaxrl-test:cpu"
    built = subprocess.run(["docker", "build", "--build-arg", "JAX_EXTRA=", "-t", tag, str(PROJECT_ROOT)],
                           capture_output=True, text=True, timeout=1800)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    ran = subprocess.run(["docker", "run", "--rm", tag, "python", "-m", "jaxrl.train", "--cfg", "job",
                          "data=btc"], capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0 and "symbol: BTC" in ran.stdout, ran.stdout[-2000:] + ran.stderr[-2000:]


# ---- launch/distributed_env.py -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def distributed_env():
    spec = importlib.util.spec_from_file_location("distributed_env", LAUNCH / "distributed_env.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_distributed_args_from_skypilot_variables(distributed_env):
    args = distributed_env.distributed_args
    assert args({}) is None  # not under SkyPilot
    assert args({"SKYPILOT_NODE_RANK": "0", "SKYPILOT_NODE_IPS": "10.0.0.1\n", "SKYPILOT_NUM_NODES": "1"}) is None
    env = {"SKYPILOT_NODE_RANK": "2", "SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2\n10.0.0.3\n",
           "SKYPILOT_NUM_NODES": "3"}
    assert args(env) == {"coordinator_address": "10.0.0.1:8476", "num_processes": 3, "process_id": 2}
    assert args({**env, "JAXRL_COORDINATOR_PORT": "1234"})["coordinator_address"] == "10.0.0.1:1234"
    assert args(env, port=9999)["coordinator_address"] == "10.0.0.1:9999"
    no_count = {k: v for k, v in env.items() if k != "SKYPILOT_NUM_NODES"}
    assert args(no_count)["num_processes"] == 3  # counted from the IP list
    for broken, words in (({**env, "SKYPILOT_NUM_NODES": "4"}, "lists 3 addresses"),
                          ({**env, "SKYPILOT_NODE_RANK": "3"}, "outside 0..2"),
                          ({**env, "SKYPILOT_NODE_RANK": "x"}, "not integers")):
        with pytest.raises(ValueError, match=words):
            args(broken)


def test_initialize_from_skypilot_calls_initialize_only_for_several_nodes(distributed_env):
    seen = []

    def fake_initialize(**kwargs):
        seen.append(kwargs)

    single = {"SKYPILOT_NODE_RANK": "0", "SKYPILOT_NODE_IPS": "10.0.0.1", "SKYPILOT_NUM_NODES": "1"}
    assert distributed_env.initialize_from_skypilot(single, initialize=fake_initialize) is None and seen == []
    pair = {"SKYPILOT_NODE_RANK": "1", "SKYPILOT_NODE_IPS": "10.0.0.1\n10.0.0.2", "SKYPILOT_NUM_NODES": "2"}
    returned = distributed_env.initialize_from_skypilot(pair, initialize=fake_initialize)
    assert seen == [returned] == [{"coordinator_address": "10.0.0.1:8476", "num_processes": 2, "process_id": 1}]


def test_distributed_wrapper_runs_a_module_on_one_node(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYPILOT_")}
    result = subprocess.run([sys.executable, str(LAUNCH / "distributed_env.py"), "-m", "json.tool", "--compact"],
                            input=json.dumps({"a": 1}), capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == '{"a":1}'
