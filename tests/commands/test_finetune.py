"""`cacl finetune`: seeded nested subsets, and the command end to end."""

import json

from cacl_cli.evaluate.finetune import subset
from tests.conftest import run_cacl


def test_same_seed_same_subset_and_fractions_are_nested_and_sized():
    assert subset(1000, 5, seed=3) == subset(1000, 5, seed=3)
    assert subset(1000, 5, seed=3) != subset(1000, 5, seed=4)
    sizes = {f: len(subset(2975, f, 0)) for f in (1, 5, 10, 100)}
    assert sizes == {1: 30, 5: 149, 10: 298, 100: 2975}
    for small, large in ((1, 5), (5, 10), (10, 100)):
        assert set(subset(2975, small, 0)) <= set(subset(2975, large, 0))
    assert subset(10, 1, 0) and len(subset(10, 1, 0)) == 1  # never empty


def test_finetune_runs_each_fraction_and_writes_subsets(tmp_path):
    result = run_cacl(
        "finetune",
        "--random-init",
        "--out",
        tmp_path,
        "--set",
        "model.width=8",
        "--set",
        "schedule.epochs=1",
        "--set",
        "eval.world_train_images=20",
        "--set",
        "eval.world_val_images=4",
        "--set",
        "eval.fractions=[10, 100]",
        "--set",
        "world.size=40",
        "--set",
        "data.size=32",
    )
    assert result.returncode == 0, result.stderr
    assert "10%" in result.stdout and "100%" in result.stdout
    assert len((tmp_path / "subset-10.txt").read_text().split()) == 2
    assert len((tmp_path / "subset-100.txt").read_text().split()) == 20
    results = json.loads((tmp_path / "results.json").read_text())
    assert (
        set(results["fractions"]) == {"10%", "100%"} and results["fractions"]["10%"]["images"] == 2
    )


def test_each_fine_tuned_network_is_kept_unless_asked_not_to(tmp_path):
    import torch

    small = []
    for item in (
        "model.width=8",
        "schedule.epochs=1",
        "eval.world_train_images=4",
        "eval.world_val_images=2",
        "eval.fractions=[50, 100]",
        "world.size=40",
        "data.size=32",
    ):
        small += ["--set", item]
    assert run_cacl("finetune", "--random-init", "--out", tmp_path / "a", *small).returncode == 0
    state = torch.load(tmp_path / "a" / "model-100.pt", weights_only=True)
    assert {k.split(".")[0] for k in state} == {"backbone", "classifier"}
    assert (tmp_path / "a" / "model-50.pt").is_file()
    done = run_cacl("finetune", "--random-init", "--no-save", "--out", tmp_path / "b", *small)
    assert done.returncode == 0 and not list((tmp_path / "b").glob("model-*.pt"))
