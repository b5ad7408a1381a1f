"""`cacl probe` end to end on the built-in world."""

import json

import pytest
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


def test_probe_reads_the_stage_eval_layer_names(tmp_path):
    args = ("probe", "--random-init", *PROBE, "--set", "model.width=8")
    for layer, channels in (("layer3", 4 * 8), ("layer4", 8 * 8)):
        run = tmp_path / layer
        done = run_cacl(*args, "--out", run, "--set", f"eval.layer={layer}")
        assert done.returncode == 0, done.stderr
        assert check_results(run)["fingerprint"]["layer"] == layer
        classifier = torch.load(run / "classifier.pt", weights_only=True)
        assert next(iter(classifier.values())).shape[1] == channels  # the 1x1 conv's inputs


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
    (tmp_path / "data").mkdir()
    assert "--random-init" in one_line_error(run_cacl("probe", "--out", tmp_path))
    line = one_line_error(
        run_cacl(
            "probe",
            "--random-init",
            "--preset",
            "probe-voc",
            "--data",
            tmp_path / "data",
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
    assert "of the resnet18's tensors are not in it" in line  # width 64 read from conv1


FAST_VOC = ["--set", "schedule.epochs=1", "--set", "model.width=8", "--set", "eval.resize=64"]


def test_data_alone_picks_the_dataset_from_its_layout(tmp_path, shared_data):
    done = run_cacl(
        "probe", "--random-init", "--data", shared_data / "voc-mini", "--out", tmp_path, *FAST_VOC
    )
    assert done.returncode == 0, done.stderr
    assert "a voc layout; using preset probe-voc" in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["fingerprint"]["dataset"] == "voc" and len(results["per_class"]) == 21


def test_the_exported_world_is_probed_with_its_own_class_names(tmp_path):
    exported = run_cacl(
        "world",
        tmp_path / "w",
        "--clips",
        "0",
        "--train-images",
        "4",
        "--val-images",
        "2",
        "--set",
        "world.size=40",
    )
    assert exported.returncode == 0, exported.stderr
    done = run_cacl(
        "probe",
        "--random-init",
        "--data",
        tmp_path / "w" / "voc",
        "--out",
        tmp_path / "p",
        *FAST_VOC,
    )
    assert done.returncode == 0, done.stderr
    names = list(json.loads((tmp_path / "p" / "results.json").read_text())["per_class"])
    assert names == (tmp_path / "w" / "voc" / "VOC2012" / "classes.txt").read_text().split()


@pytest.mark.parametrize(
    "layout,expected",
    [
        (["JPEGImages/480p/", "Annotations/480p/"], "score it with `cacl propagate"),
        (["clips/a.mp4"], "run `cacl extract-pairs` on it first"),
        (["notes.txt"], "--set eval.dataset=voc|cityscapes|folder"),
    ],
)
def test_an_unknown_layout_is_refused_with_the_keys_to_set(tmp_path, layout, expected):
    for name in layout:
        path = tmp_path / "d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir() if name.endswith("/") else path.write_text("x")
    line = one_line_error(run_cacl("probe", "--random-init", "--data", tmp_path / "d"))
    assert expected in line and str(tmp_path / "d") in line


def test_data_with_a_world_preset_is_refused_not_ignored(tmp_path, shared_data):
    line = one_line_error(
        run_cacl(
            "probe", "--random-init", "--preset", "probe-world", "--data", shared_data / "voc-mini"
        )
    )
    assert "would be ignored" in line and "eval.dataset" in line
