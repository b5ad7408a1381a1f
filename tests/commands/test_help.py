"""Every command's help page reads whole: in a narrow and a wide terminal, and when piped."""

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cacl_cli.cli import app
from tests.conftest import ROOT

COMMANDS = [
    "extract-pairs",
    "pretrain",
    "probe",
    "finetune",
    "visualize",
    "propagate",
    "export",
    "world",
    "presets",
]


def _flat(text: str) -> str:
    """The page as one line: wrapping (which depends on the width) undone."""
    return re.sub(r"\s+", " ", re.sub(r"-\n\s*", "-", text))


def _page(command: str, columns: int) -> str:
    done = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": str(columns)})
    assert done.exit_code == 0, done.output
    return done.output


@pytest.mark.parametrize("columns", [50, 200])
@pytest.mark.parametrize("command", COMMANDS)
def test_bracketed_defaults_read_whole_at_any_width(command, columns):
    page = _flat(_page(command, columns))
    if command not in ("extract-pairs", "export", "presets", "world"):
        assert "[default: a new runs/COMMAND-PRESET-DATE-TIME]" in page
    if "--device" in page:
        assert "[default: the preset's run.device]" in page
    assert not re.search(r" \.( |$)", page)  # no text dropped before a full stop


@pytest.mark.parametrize(
    "command,preset",
    [
        ("probe", "probe-world"),
        ("finetune", "finetune-world"),
        ("pretrain", "tiny-world"),
        ("propagate", "propagate-dino"),
    ],
)
def test_each_command_names_its_default_preset(command, preset):
    assert f"layer several as a+b [default: {preset}]" in _flat(_page(command, 200))


def test_flags_that_set_preset_keys_show_the_value_a_run_gets():
    page = _flat(_page("propagate", 120))
    assert "--topk" in page and "(sets propagate.topk) [default: 5, preset propagate-dino]" in page
    extract = _flat(_page("extract-pairs", 120))
    assert "(sets extract.stride) [default: 8, preset extract-kinetics]" in extract


def test_the_page_is_the_same_text_when_piped():
    command = [sys.executable, "-m", "cacl_cli", "probe", "--help"]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, env={"COLUMNS": "80", "PATH": ""}
    )
    assert done.returncode == 0 and "\x1b[" not in done.stdout
    assert "[default: a new runs/COMMAND-PRESET-DATE-TIME]" in _flat(done.stdout)
