"""`cacl probe` end to end on the built-in world."""

import json

import torch

from cacl_cli.config import resolve
from cacl_cli.training import pretrain
from tests.commands.test_pretrain import one_line_error
from tests.conftest import TINY, run_cacl

PROBE = [
    "--set",
    "schedule.epochs=3",
    "--set",
    "eval.world_train_images=24",
    "--set",
    "eval.world_val_images=8",
    "--set",
    "world.size=40",
    "--set",
    "data.batch_size=8",
]


def check_results(run):
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["miou"] <= 1 and len(results["per_class"]) == 6
    assert results["backbone_unchanged"] is True
    assert results["fingerprint"]["train_images"] == 24 and results["fingerprint"]["epochs"] == 3
    assert "255 = ignore" in results["convention"]
    assert (run / "classifier.pt").is_file() and (run / "config.yaml").is_file()
    return results


def test_probe_random_init_and_pretrained(tmp_path):
    floor = run_cacl(
        "probe", "--random-init", "--out", tmp_path / "floor", *PROBE, "--set", "model.width=8"
    )
    assert floor.returncode == 0, floor.stderr
    assert "background" in floor.stdout and "mIoU" in floor.stdout  # the per-class table
    assert check_results(tmp_path / "floor")["fingerprint"]["checkpoint"]["source"] == "random init"

    pretrain(
        resolve("tiny-world", TINY + ["schedule.steps=3", "world.size=40"]),
        tmp_path / "pre",
        torch.device("cpu"),
    )
    probed = run_cacl(
        "probe", "--checkpoint", tmp_path / "pre", "--out", tmp_path / "probe", *PROBE
    )
    assert probed.returncode == 0, probed.stderr
    weights = check_results(tmp_path / "probe")["fingerprint"]["checkpoint"]
    assert weights["width"] == 8 and len(weights["sha256"]) == 64 and weights["missing"] == []


def test_probe_reads_voc_mini(tmp_path, shared_data):
    result = run_cacl(
        "probe",
        "--random-init",
        "--preset",
        "probe-voc",
        "--data",
        shared_data / "voc-mini",
        "--out",
        tmp_path,
        "--set",
        "schedule.epochs=1",
        "--set",
        "model.width=8",
        "--set",
        "eval.resize=64",
    )
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["fingerprint"]["train_images"] == 2 and len(results["per_class"]) == 21


def test_probe_errors(tmp_path):
    assert "--random-init" in one_line_error(run_cacl("probe", "--out", tmp_path))
    line = one_line_error(
        run_cacl(
            "probe",
            "--random-init",
            "--preset",
            "probe-voc",
            "--data",
            tmp_path,
            "--out",
            tmp_path / "r",
        )
    )
    assert "is not a VOC 2012 folder" in line
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_text("junk")
    assert "x.pt" in one_line_error(
        run_cacl("probe", "--checkpoint", not_ckpt, "--out", tmp_path / "r")
    )
    line = one_line_error(
        run_cacl("probe", "--random-init", "--preset", "probe-voc", "--out", tmp_path / "r")
    )
    assert "give its folder with --data" in line


def test_checkpoint_of_the_wrong_architecture_is_refused(tmp_path):
    torch.save(
        {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)},
        tmp_path / "partial.pt",
    )
    line = one_line_error(
        run_cacl(
            "probe",
            "--checkpoint",
            tmp_path / "partial.pt",
            "--out",
            tmp_path / "r",
            "--set",
            "model.width=16",
        )
    )
    assert "do not fit a resnet18 of width 16" in line
