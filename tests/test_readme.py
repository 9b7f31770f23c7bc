"""The README is the user's manual: every shell command in its ```bash blocks runs as typed, from a temporary working
directory outside the checkout, with the shrinking overrides the README declares next to it.

Directives live in an HTML comment right before a block (invisible on the rendered page):

    <!-- readme-test
    shrink: $tiny                        overrides appended to every `python -m jaxrl.<hydra app>` command of the block
    shrink "<text>": $tiny grid.seeds=[0]   instead, for the commands containing <text> (any command, e.g. a bench)
    writes "<text>": runs/*/*/gate.json  globs the command must write (files newer than its start)
    skip "<text>": needs a cloud account  not run: listed as skipped with the reason (cloud, GPU, network, your files)
    together: <why>                      the block's commands depend on each other: run in order, in one directory
    -->

A command may carry a here-document (`python - <<'EOF'` ... `EOF`): its lines are part of the command, as typed.
`$name` expands a shrink set declared once in a `<!-- readme-test-shrinks ... -->` comment (`name: overrides`).
Each command is its own test in its own fresh directory (pytest-xdist spreads them over the cores), unless its block
says `together:`; then the block is one test whose commands run in order in one directory (`jaxrl.status
runs/combos` reads what the combo runner before it wrote). Every Hydra app runs with the session's compilation cache
(tests/conftest.py), so equal shapes compile once.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from jaxrl.experiment import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"
HYDRA_APPS = ("python -m jaxrl.train", "python -m jaxrl.combos", "python -m jaxrl.backtest")
CACHED_APPS = ("python -m jaxrl.train", "python -m jaxrl.combos")  # their configs have compilation_cache
BLOCK = re.compile(r"(?:<!--\s*readme-test\n(?P<directives>.*?)-->\s*\n)?```bash\n(?P<body>.*?)```", re.S)
SHRINKS = re.compile(r"<!--\s*readme-test-shrinks\n(?P<body>.*?)-->", re.S)
DIRECTIVE = re.compile(r'^(?P<kind>shrink|writes|skip|together)(?:\s+"(?P<match>[^"]+)")?\s*:\s*(?P<value>.*)$')
TIMEOUT_S = 600


@dataclass
class Command:
    line: int  # 1-based line of README.md
    block: int  # 1-based line of its block's opening fence
    text: str  # as typed (continuations joined, trailing comment dropped)
    shrink: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    skip: str | None = None
    together: bool = False  # runs in order with the rest of its block, in the block's directory

    @property
    def shell(self) -> str:
        extra = list(self.shrink)
        if self.text.startswith(CACHED_APPS):
            extra.append(f"compilation_cache={os.environ.get('JAXRL_TEST_XLA_CACHE') or 'null'}")
        return " ".join([self.text, *(shlex.quote(x) for x in extra)])


HEREDOC = re.compile(r"(?<!<)<<(?!<)-?\s*(['\"]?)(\w+)\1")  # `<<'EOF'`, `<<EOF`, `<<-EOF`; not `<<<`


def _split(text: str) -> list[tuple[int, str]]:
    """(line offset, command) of a block body: `\\` continuations joined, comments and blank lines dropped; a
    here-document (`python - <<'EOF'` ... `EOF`) stays part of its command, line for line."""
    out, pending, start, heredoc = [], "", 0, None
    for i, raw in enumerate(text.splitlines()):
        line = raw.rstrip()
        if heredoc is not None:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + raw)
            if line.strip() == heredoc:
                heredoc = None
            continue
        if not pending:
            start = i
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        command = re.sub(r"\s+#\s.*$", "", pending + line.strip()).strip()
        pending = ""
        out.append((start, command))
        opened = HEREDOC.search(command)
        heredoc = opened.group(2) if opened else None
    assert heredoc is None, f"here-document {heredoc!r} is never closed"
    return out


def readme_commands(text: str) -> list[Command]:
    shrinks = {}
    for match in SHRINKS.finditer(text):
        for line in match.group("body").splitlines():
            if line.strip():
                name, _, value = line.partition(":")
                shrinks[name.strip()] = value.strip()

    def expand(value: str) -> list[str]:
        value = re.sub(r"\$(\w+)", lambda m: shrinks[m.group(1)], value)
        return shlex.split(value)

    commands = []
    for block in BLOCK.finditer(text):
        body_line = text[:block.start("body")].count("\n") + 1
        rules = []
        for line in (block.group("directives") or "").splitlines():
            if line.strip():
                parsed = DIRECTIVE.match(line.strip())
                assert parsed, f"README line ~{body_line}: unreadable readme-test directive {line!r}"
                rules.append(parsed.groupdict())
        for offset, text_ in _split(block.group("body")):
            command = Command(body_line + offset, body_line - 1, text_)
            for rule in rules:
                if rule["match"] is not None and rule["match"] not in text_:
                    continue
                if rule["kind"] == "shrink" and (rule["match"] is not None or text_.startswith(HYDRA_APPS)):
                    if rule["match"] is not None or not command.shrink:
                        command.shrink = expand(rule["value"])
                elif rule["kind"] == "writes":
                    command.writes += rule["value"].split()
                elif rule["kind"] == "skip":
                    command.skip = rule["value"].strip()
                elif rule["kind"] == "together":
                    command.together = True
            commands.append(command)
    return commands


COMMANDS = readme_commands(README.read_text())
SKIPPED = [c for c in COMMANDS if c.skip]
RUN = [c for c in COMMANDS if not c.skip]
# A test is one command, or a `together:` block's commands (keyed by the block's first command's line).
GROUPS: dict[int, list[Command]] = {}
for _command in RUN:
    GROUPS.setdefault(_command.block if _command.together else _command.line, []).append(_command)


def test_every_readme_command_is_run_shrunk_or_skipped_with_a_reason():
    assert len(COMMANDS) > 20 and RUN and SKIPPED
    for command in RUN:
        if command.text.startswith(HYDRA_APPS):
            assert command.shrink, f"README line {command.line}: {command.text!r} runs unshrunk; declare a shrink"
    for command in SKIPPED:
        assert len(command.skip) > 8, f"README line {command.line}: skip without a reason"
    # Parsing itself: continuations, comments, quoting.
    parsed = readme_commands('<!-- readme-test-shrinks\nt: a=1 b=2\n-->\n<!-- readme-test\nshrink: $t\n'
                             'skip "sky": needs a cloud account\nwrites "train": runs/x\n-->\n```bash\n'
                             '# a comment\npython -m jaxrl.train \\\n    x=1   # why\nsky launch y\n```\n')
    assert [(c.text, c.shrink, c.skip, c.writes) for c in parsed] == [
        ("python -m jaxrl.train x=1", ["a=1", "b=2"], None, ["runs/x"]),
        ("sky launch y", [], "needs a cloud account", [])]
    heredoc = readme_commands("```bash\npython - <<'EOF'\n# kept\nprint(1)  # kept too\n\nEOF\necho next\n```\n")
    assert [c.text for c in heredoc] == ["python - <<'EOF'\n# kept\nprint(1)  # kept too\n\nEOF", "echo next"]
    print(f"README: {len(RUN)} commands run in {len(GROUPS)} tests, {len(SKIPPED)} skipped:\n"
          + "\n".join(f"  skipped line {c.line}: {c.text[:70]}: {c.skip}" for c in SKIPPED))


@pytest.mark.parametrize("command", SKIPPED, ids=[f"line{c.line}" for c in SKIPPED])
def test_skipped_readme_command(command):
    pytest.skip(f"README line {command.line}: {command.text[:60]}: {command.skip}")


def _text(output: bytes | str | None) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


@pytest.mark.parametrize("group", sorted(GROUPS), ids=[f"line{g}" for g in sorted(GROUPS)])
def test_readme_command_runs_as_typed(group, tmp_path_factory):
    """One README command (or a `together:` block's commands, in order) in a temporary directory outside the
    checkout."""
    workdir = tmp_path_factory.mktemp(f"readme{group}")
    assert PROJECT_ROOT not in workdir.parents
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}
    failures, report = [], []
    for command in GROUPS[group]:
        started = time.time() - 1
        try:
            done = subprocess.run(["bash", "-c", command.shell], cwd=workdir, env=env, capture_output=True,
                                  text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired as error:  # a failure of this command; the block's others still run
            done = subprocess.CompletedProcess(error.cmd, f"timeout after {TIMEOUT_S}s", _text(error.stdout),
                                               _text(error.stderr))
        seconds = time.time() - started
        missing = [pattern for pattern in command.writes
                   if not any(p.stat().st_mtime >= started for p in workdir.glob(pattern))]
        report.append(f"  {'ok  ' if done.returncode == 0 and not missing else 'FAIL'} {seconds:5.1f}s  "
                      f"line {command.line}: {command.text}")
        if done.returncode != 0 or missing:
            failures.append(f"README line {command.line}: {command.shell}\n  exit {done.returncode}"
                            f"{'; not written: ' + ', '.join(missing) if missing else ''}\n"
                            f"{done.stdout[-1500:]}\n{done.stderr[-2500:]}")
    summary = f"README line {group}:\n" + "\n".join(report)
    print(summary)
    assert not failures, summary + "\n\n" + "\n\n".join(failures)
