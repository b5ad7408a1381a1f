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


@pytest.mark.parametrize(
    "command,extra",
    [
        ("probe", []),
        ("finetune", []),
        ("propagate", ["DAVIS"]),
        ("visualize", ["frames"]),
    ],
)
def test_every_command_refuses_two_sources_before_anything_is_written(tmp_path, command, extra):
    out = tmp_path / "out"
    args = [*extra, "--checkpoint", tmp_path / "x.pt", "--random-init", "--out", out]
    done = run_cacl(command, *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "not several" in done.stderr and not out.exists()


def test_default_folders_say_what_was_evaluated_and_by_which_protocol(tmp_path, monkeypatch):
    from cacl_cli.outputs import default_folder
    from cacl_cli.pretrained import Weights
    from cacl_cli.run_folder import judged_name as evaluated

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "runs" / "mine"
    (run / "checkpoints").mkdir(parents=True)
    step = run / "checkpoints" / "step-0000300.pt"
    assert evaluated(run) == "mine" and evaluated(step) == "mine-step-0000300"
    assert evaluated(tmp_path / "resnet18.pth") == "resnet18" and evaluated(None) == "random-init"
    assert Weights.of_baseline("copy").name == "copy-baseline"
    assert Weights.of(None, "resnet18", 8).name == "random-init"
    assert default_folder("probe", "probe-world", "mine").name.startswith("mine-probe-world-")
    assert default_folder("propagate", "propagate-dino", "copy-baseline").name.startswith(
        "copy-baseline-propagate-dino-"
    )
    assert default_folder("pretrain", "tiny-world").name.startswith("pretrain-tiny-world-")


@pytest.mark.slow  # 25 s: three world exports, a pretrain, an export and a probe
def test_one_vocabulary_old_spellings_still_work(tmp_path):
    """--out and --checkpoint everywhere (the positional forms stay); --arch/--width/--seed on
    every command that evaluates a random init."""
    from tests.conftest import pretrained

    args = ["--clips", "0", "--train-images", "1", "--val-images", "1", "--set", "world.size=32"]
    assert run_cacl("world", "--out", tmp_path / "w1", *args).returncode == 0
    assert run_cacl("world", tmp_path / "w2", *args).returncode == 0
    assert (tmp_path / "w1" / "voc").is_dir() and (tmp_path / "w2" / "voc").is_dir()
    both = run_cacl("world", tmp_path / "w3", "--out", tmp_path / "w4", *args)
    assert both.returncode == 2 and "not both" in both.stderr
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=1")
    assert run_cacl("export", "--checkpoint", run, "--out", tmp_path / "e").returncode == 0
    assert (tmp_path / "e" / "layout.json").is_file()
    probe = run_cacl(
        "probe",
        "--random-init",
        "--arch",
        "resnet18",
        "--width",
        "8",
        "--seed",
        "3",
        "--set",
        "schedule.epochs=1",
        "--set",
        "eval.world_train_images=2",
        "--set",
        "eval.world_val_images=1",
        "--set",
        "world.size=32",
        "--out",
        tmp_path / "p",
    )
    assert probe.returncode == 0, probe.stderr
    saved = (tmp_path / "p" / "config.yaml").read_text()
    assert "width: 8" in saved and "seed: 3" in saved
