"""``pas``'s commands are imported when asked for: help lists every one, each one's module
loads and answers its own help, and a name that is no command is refused."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from libs.cli.app import COMMANDS, cli
from tests.support.processes import REPO_ROOT


def test_help_lists_every_command() -> None:
    shown = CliRunner().invoke(cli, ["--help"], env={"PAS_ENV_FILE": ""})

    assert shown.exit_code == 0, shown.output
    listed = shown.output.split("Commands:", 1)[1].split()
    assert set(COMMANDS) <= set(listed)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_loads_and_answers_its_help(name: str) -> None:
    shown = CliRunner().invoke(cli, [name, "--help"], env={"PAS_ENV_FILE": ""})

    assert shown.exit_code == 0, shown.output
    assert "Usage:" in shown.output or "usage:" in shown.output, shown.output


def test_an_unknown_command_is_refused_by_name() -> None:
    refused = CliRunner().invoke(cli, ["stauts"], env={"PAS_ENV_FILE": ""})

    assert refused.exit_code == 2
    assert "No such command 'stauts'" in refused.output


def test_a_command_imports_only_its_own_module() -> None:
    """``pas key new`` does not load the Kafka commands' modules (what made every ``pas`` take
    about a second more)."""
    probe = (
        "import json, sys; from libs.cli.app import cli\n"
        "try:\n    cli(['key', 'new', 'fx'], prog_name='pas')\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('libs.cli.'))))"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        env={"PAS_ENV_FILE": "", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(ran.stdout.strip().splitlines()[-1]))
    assert "libs.cli.keys" in loaded
    assert not {"libs.cli.dlq", "libs.cli.send", "libs.cli.costs"} & loaded
