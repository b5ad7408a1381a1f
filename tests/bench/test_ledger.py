"""The ledger of bench/learning.py: cells kept across kills and machines, one recipe per folder,
and the seed-paired comparison with its t-interval."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("ledger", ROOT / "bench" / "ledger.py")
ledger = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ledger)


def test_the_t_quantiles_are_students():
    for df, expected in ((1, 12.706), (2, 4.303), (5, 2.571), (11, 2.201), (30, 2.042)):
        assert ledger.t_quantile_975(df) == pytest.approx(expected, abs=1e-3)


def test_the_issues_six_seeds_give_its_intervals_and_verdicts():
    """CACL minus MoCo-v2 at commit 97ae707 ("Paired by seed" in the README of
    bench/experiments/2026-11-28-learning-table-shipped/), as the issue paired them (the
    differences rounded to two places, so the figures agree to about 0.01): the probe's interval
    straddles 0, the world's lies above it."""
    moco = dict(enumerate([0.0] * 6))
    probe = ledger.paired(dict(enumerate([0.83, 2.15, 1.14, 0.44, -0.44, 0.59])), moco)
    near = lambda *values: pytest.approx(values, abs=0.012)  # noqa: E731
    assert (probe["mean"], probe["sd"], probe["low"], probe["high"]) == near(
        0.79, 0.86, -0.11, 1.68
    )
    assert probe["verdict"] == "not separated" and probe["ahead"] == 5
    world = ledger.paired(dict(enumerate([8.46, 10.11, 10.59, 12.62, 10.53, 11.41])), moco)
    assert (world["mean"], world["low"], world["high"]) == near(10.62, 9.17, 12.07)
    assert world["verdict"] == "CACL ahead"
    behind = ledger.paired({0: 1.0, 1: 2.0, 2: 1.5}, {0: 3.0, 1: 3.9, 2: 3.6})
    assert behind["verdict"] == "MoCo-v2 ahead"


def test_only_seeds_both_methods_hold_are_paired():
    pair = ledger.paired({0: 2.0, 1: 3.0, 2: 9.0}, {0: 1.0, 1: 1.0, 3: 0.0})
    assert pair["seeds"] == [0, 1] and pair["diffs"] == [1.0, 2.0]
    assert ledger.paired({0: 1.0}, {0: 0.5})["verdict"] == "too few pairs"


def test_a_recipe_differs_only_in_values_both_sides_hold():
    saved = {"pretrain/CACL": {"loss.tau": 0.07, "loss.retired": 1}, "probe": {"optim.lr": 0.6}}
    later = {
        "pretrain/CACL": {"loss.tau": 0.07, "loss.added_later": True},
        "probe": {"optim.lr": 0.6},
        "pretrain/MoCo-v2": {"loss.tau": 0.2},
    }
    assert ledger.differences(saved, later) == []
    changed = {"pretrain/CACL": {"loss.tau": 0.2}, "probe": {"optim.lr": 0.5}}
    assert ledger.differences(saved, changed) == [
        "pretrain/CACL loss.tau: 0.07 -> 0.2",
        "probe optim.lr: 0.6 -> 0.5",
    ]


def test_settings_leave_out_what_says_where_or_how_often_not_what():
    from cacl_cli.config import resolve

    a = ledger.settings(resolve("tiny-world", ["run.seed=3", "run.log_every=7", "data.path=/a"]))
    b = ledger.settings(resolve("tiny-world", ["run.checkpoint_every=5"]))
    assert a == b and a["loss.tau"] == 0.07 and not any(k.startswith("preset.") for k in a)


def test_a_record_cut_short_by_a_kill_is_no_record_and_the_next_one_does_not_join_it(tmp_path):
    path = tmp_path / "results.jsonl"
    ledger.append_record(path, {"method": "CACL", "seed": 0})
    with open(path, "a") as fh:
        fh.write('{"method": "MoCo-v2", "se')  # a kill in the middle of a write
    assert ledger.read_records(path) == [{"method": "CACL", "seed": 0}]
    ledger.append_record(path, {"method": "MoCo-v2", "seed": 0})
    assert ledger.read_records(path) == [
        {"method": "CACL", "seed": 0},
        {"method": "MoCo-v2", "seed": 0},
    ]


def test_the_cpu_is_named_with_the_flags_that_decide_its_arithmetic(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("model name\t: AMD EPYC 9654\nflags\t\t: fpu avx2 avx512f avx512_bf16\n")
    assert ledger.cpu_model_and_flags(cpuinfo) == (
        "AMD EPYC 9654",
        ["avx2", "avx512f", "avx512_bf16"],
    )


def _learning(*args, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "bench" / "learning.py"), "--quick", *map(str, args)]
    if not wait:
        return subprocess.Popen(
            command, env=env, process_group=0, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow  # a tiny ledger killed after its first cell, then finished: about a minute
def test_a_killed_ledgers_cells_are_kept_a_rerun_skips_them_and_another_recipe_is_refused(
    tmp_path,
):
    folder, work = tmp_path / "ledger", tmp_path / "work"
    args = ["--ledger", folder, "--work", work, "--methods", "MoCo-v2", "CACL", "--jobs", "2"]
    results = folder / "results.jsonl"
    proc = _learning(*args, wait=False)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not ledger.read_records(results):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = ledger.read_records(results)
    assert len(before) >= 1
    recipe = json.loads((folder / "recipe.json").read_text())
    assert recipe["recipe"]["pretrain/CACL"]["run.amp"] == "off"  # float32 on every machine
    assert recipe["recipe"]["pretrain/CACL"]["loss.queue_matmul"] == "float32"

    done = _learning(*args)
    assert done.returncode == 0, done.stderr[-2000:]
    after = ledger.read_records(results)
    assert after[: len(before)] == before and len(before) < len(after)  # kept, then completed
    keys = [(r["method"], r["seed"], r["kind"]) for r in after]
    assert len(keys) == len(set(keys))  # none measured twice
    kinds = {r["kind"] for r in after}
    assert set(keys) == {(m, 0, k) for m in ("MoCo-v2", "CACL") for k in kinds}  # --quick: seed 0
    for record in after:
        assert record["precision"] == "float32" and record["cpu"] and record["commit"]
        assert isinstance(record["cpu_flags"], list)
    table = (folder / "table.md").read_text()
    assert f"{len(after)} of {len(after)} cells" in table and "95% t-interval" in table

    again = _learning(*args)  # every cell is there: nothing runs, nothing is added
    assert again.returncode == 0 and ledger.read_records(results) == after
    refused = _learning(*args, "--set", "loss.tau=0.2")
    assert refused.returncode == 2
    (line,) = [line for line in refused.stdout.splitlines() if line.strip()]
    assert "holds cells of another recipe: pretrain/CACL loss.tau: 0.07 -> 0.2" in line
    assert ledger.read_records(results) == after
