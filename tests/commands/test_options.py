"""Options shared by the commands: the one-weights-source rule."""

import pytest

from cacl_cli.commands.options import one_weights_source
from cacl_cli.errors import CaclError
from tests.conftest import run_cacl


def test_one_weights_source_names_the_one_given():
    assert one_weights_source(checkpoint="runs/a", random_init=False) == "checkpoint"
    assert one_weights_source(checkpoint=None, random_init=True, baseline=None) == "random_init"
    assert one_weights_source(False, checkpoint=None, compare=None, random_init=False) is None


def test_several_or_none_are_refused_naming_every_flag():
    with pytest.raises(CaclError, match="give one of --checkpoint, --random-init, not several"):
        one_weights_source(checkpoint="runs/a", random_init=True)
    with pytest.raises(CaclError, match="give one of --checkpoint, --random-init, --baseline"):
        one_weights_source(checkpoint=None, random_init=False, baseline=None)


@pytest.mark.parametrize("command,extra", [
    ("probe", []), ("finetune", []), ("propagate", ["DAVIS"]), ("visualize", ["frames"]),
])  # fmt: skip
def test_every_command_refuses_two_sources_before_anything_is_written(tmp_path, command, extra):
    out = tmp_path / "out"
    args = [*extra, "--checkpoint", tmp_path / "x.pt", "--random-init", "--out", out]
    done = run_cacl(command, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not several" in done.stderr and not out.exists()
