"""The command line imports only the chosen command (engine/cli/__init__.py): budget
and laws start without torch, `--help` lists every command without importing any,
and a table entry whose module is missing fails loudly."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from engine import cli
from tests.conftest import ROOT

# runs `python -m engine ARGS` in-process, then reports which modules were imported
WRAPPER = """
import json, runpy, sys
sys.argv = ["engine", *sys.argv[1:]]
try:
    runpy.run_module("engine", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "engine"))),
      file=sys.stderr)
"""


def imported_by(*args: str) -> tuple[str, list[str]]:
    done = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    return done.stdout, json.loads(done.stderr.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("args", [("budget", "--help"), ("budget", "--budget", "20000", "--json"),
                                  ("laws", "presets", "--json")])
def test_budget_and_laws_import_no_torch(args):
    stdout, modules = imported_by(*args)
    assert stdout.strip()
    assert not [m for m in modules if m.split(".")[0] in ("torch", "transformers")]
    other_commands = {f"engine.cli.{module}" for name, (module, _) in cli.COMMANDS.items() if name != args[0]}
    assert not other_commands & set(modules)


@pytest.mark.slow
def test_help_lists_every_command_without_importing_them():
    stdout, modules = imported_by("--help")
    for name, (_, help_text) in cli.COMMANDS.items():
        assert name in stdout and help_text in stdout
    assert not [m for m in modules if m.startswith("engine.cli.")]


def test_every_table_entry_builds_its_command():
    for name in cli.COMMANDS:
        subparsers = next(a for a in cli.build_parser([name])._actions if isinstance(a, argparse._SubParsersAction))
        built = subparsers.choices[name]
        assert built.get_default("handler") or any(isinstance(a, argparse._SubParsersAction) for a in built._actions)


def test_a_table_entry_whose_module_is_missing_fails_loudly(monkeypatch):
    monkeypatch.setitem(cli.COMMANDS, "ghost", ("ghost_command_deleted", "a command whose module is gone"))
    with pytest.raises(ModuleNotFoundError, match="ghost_command_deleted"):
        cli.main(["ghost"])
    with pytest.raises(ModuleNotFoundError, match="ghost_command_deleted"):
        cli.build_parser()


def test_an_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bogus"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
