"""The learning table: seeds in order, gaps against twice the larger spread, one world clip set;
and a stop between sessions that loses no run in flight."""

import importlib.util
import os
import shlex
import signal
import sys
import threading
import time

import pytest

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("learning", ROOT / "bench" / "learning.py")
learning = importlib.util.module_from_spec(spec)
spec.loader.exec_module(learning)


def record(method: str, seed: int, kind: str, value: float) -> dict:
    key = {"probe": "miou", "davis": "davis_jf", "world": "world_jf"}[kind]
    return {"method": method, "seed": seed, "step": 10, "kind": kind, key: value}


def test_each_yardstick_lists_its_seeds_in_seed_order_whatever_order_they_finished():
    records = [
        record("CACL", seed, kind, value)
        for seed, value in ((2, 0.3), (0, 0.1), (1, 0.2))
        for kind in ("probe", "davis", "world")
    ]
    (row,) = learning.summarise(records, ["CACL"], final=10)
    for yardstick in ("probe", "davis", "world"):
        assert row[yardstick]["values"] == [10.0, 20.0, 30.0]
        assert row[yardstick]["mean"] == 20.0 and row[yardstick]["std"] == 10.0


def test_records_on_either_scale_give_the_same_table():
    """Records from before the x100 fields hold fractions under ``davis_jf``; newer ones hold
    ``davis_jf_x100``: a redraw from a mix scales each once."""
    old = [record("CACL", seed, "davis", value) for seed, value in ((0, 0.25), (1, 0.35))]
    new = [
        {**{k: v for k, v in r.items() if k != "davis_jf"}, "davis_jf_x100": 100 * r["davis_jf"]}
        for r in old
    ]
    probes = [record("CACL", seed, "probe", 0.2) for seed in (0, 1)]
    for records in (old, new, [old[0], new[1]]):
        (row,) = learning.summarise(probes + records, ["CACL"], final=10)
        assert row["davis"]["values"] == [25.0, 35.0]


def test_a_gap_meets_the_target_only_beyond_twice_the_larger_spread():
    def row(mean: float, std: float) -> dict:
        return {"world": {"mean": mean, "std": std, "values": [mean]}}

    base = row(30.0, 1.0)
    assert learning._versus(row(34.1, 2.0), base, "world") == "+4.10 (> 4.00)"
    assert learning._versus(row(33.9, 2.0), base, "world") == "+3.90 (<= 4.00)"
    assert learning._versus(base, base, "world") == ""


def test_a_row_names_what_its_dense_heads_read_unless_it_is_the_last_stage():
    from cacl_cli.config import resolve

    assert learning.recipe(resolve("tiny-world", ["model.dense_neck=0"]))[0] == "G P C"
    assert (
        learning.recipe(resolve("tiny-world", ["model.dense_stage=layer3", "model.dense_neck=0"]))[
            0
        ]
        == "G P C (P C on layer3)"
    )
    no_pixel = resolve(
        "tiny-world", ["heads.pixel=false", "model.dense_stage=layer3", "model.dense_neck=0"]
    )
    assert learning.recipe(no_pixel)[0] == "G C (C on layer3)"
    necked = resolve("tiny-world", ["model.dense_neck=1"])
    assert learning.recipe(necked)[0] == "G P C (P C on layer4 + 1-block neck)"
    moco = resolve(
        "tiny-world", ["heads.pixel=false", "heads.cycle=false", "model.dense_stage=layer3"]
    )
    assert learning.recipe(moco)[0] == "G"


def test_world_clips_drawn_for_another_count_are_refused_not_mixed(tmp_path):
    listing = tmp_path / "world-davis" / "ImageSets" / "2017" / "val.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("world_0000\nworld_0001\nworld_0002\n")
    bench = learning.Benchmark(learning.parse_args(["--out", str(tmp_path), "--world-clips", "2"]))
    with pytest.raises(RuntimeError, match="holds 3 clips, not --world-clips 2"):
        bench.world_clips()
    bench.args.world_clips = 3
    assert bench.world_clips() == tmp_path / "world-davis"


def test_each_run_gets_its_share_of_the_cores_unless_the_caller_set_the_threads(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(learning.os, "cpu_count", lambda: 64)  # the node; 8 of them are ours
    monkeypatch.setattr(learning.os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    args = learning.parse_args(["--out", str(tmp_path), "--jobs", "2"])
    assert learning.Benchmark(args).threads == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # another invocation runs beside this one
    assert learning.Benchmark(args).threads == "1"


def test_the_yardsticks_figure_draws_a_panel_for_each_measured_yardstick_only(tmp_path):
    pytest.importorskip("matplotlib")
    records = [
        record(method, seed, kind, value + seed / 100)
        for method, value in (("MoCo-v2", 0.3), ("CACL", 0.35))
        for seed in (0, 1, 2)
        for kind in ("probe", "world")
    ]
    rows = learning.summarise(records, ["MoCo-v2", "CACL"], final=10)
    figure = tmp_path / "yardsticks.png"
    assert learning.plot_yardsticks(rows, figure) == ["probe", "world"]  # no DAVIS measured
    assert figure.read_bytes().startswith(b"\x89PNG")
    assert learning.plot_yardsticks([], tmp_path / "none.png") == []
    assert not (tmp_path / "none.png").exists()


def test_a_yardstick_not_measured_or_measured_once_prints_no_nan():
    """``--world-clips 0`` leaves the world column empty; a single seed has no spread."""
    records = [record("MoCo-v2", 0, "probe", 0.2), record("CACL", 0, "probe", 0.3)]
    rows = learning.summarise(records, ["MoCo-v2", "CACL"], final=10)
    table = learning.table_markdown(rows, {"MoCo-v2": ["-"] * 5, "CACL": ["-"] * 5}, "header")
    assert "nan" not in table
    assert learning._mean_std(rows[1]["world"]) == "-"
    assert learning._mean_std(rows[1]["probe"]) == "30.00"
    assert "+10.00 (one seed: no spread)" in table


# Stands in for `cacl`: trains until SIGTERM, then does what `cacl pretrain` does on it (writes a
# checkpoint, tests/faults/test_interruptions.py) and ends with 128 + 15.
FAKE_CACL = """
import os, signal, sys, time
from pathlib import Path

mark = Path(os.environ["FAKE_CACL_MARKS"]) / str(os.getpid())


def checkpoint_and_end(signum, frame):
    mark.write_text("checkpointed")
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, checkpoint_and_end)
mark.write_text("training")
time.sleep(120)
"""


def test_a_stop_ends_the_runs_in_flight_starts_no_other_and_says_the_command_goes_on(
    tmp_path, monkeypatch, capsys
):
    """SIGTERM to a ledger of two jobs and three tasks: both live runs are asked to end (and so
    checkpoint), the third task never starts a process, and the exit code is 128 + 15."""
    marks, script, python = tmp_path / "marks", tmp_path / "fake_cacl.py", tmp_path / "python"
    marks.mkdir()
    script.write_text(FAKE_CACL)
    python.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(script))}\n")
    python.chmod(0o755)
    monkeypatch.setattr(learning.sys, "executable", str(python))
    monkeypatch.setenv("FAKE_CACL_MARKS", str(marks))

    def stop_once_both_train():
        deadline = time.time() + 120
        while time.time() < deadline:
            if [m.read_text() for m in marks.iterdir()] == ["training", "training"]:
                break
            time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_once_both_train, daemon=True).start()
    methods = ["--methods", "MoCo-v2", "CACL", "random init", "--jobs", "2"]
    ledger = tmp_path / "ledger"
    argv = ["--quick", "--ledger", ledger, "--work", tmp_path / "work", *methods]
    code = learning.main(list(map(str, argv)))
    assert code == 128 + signal.SIGTERM
    assert [m.read_text() for m in marks.iterdir()] == ["checkpointed", "checkpointed"]
    out = capsys.readouterr().out
    assert "stopped by SIGTERM: 0 records in" in out and "the same command goes on" in out
    assert learning.ledgers.read_records(ledger / "results.jsonl") == []


def test_a_ledgers_header_names_where_its_design_is_written(tmp_path):
    """The claim's ledger holds its design.md; the real-video ledgers share the README above."""
    args = learning.parse_args(["--ledger", str(tmp_path / "novel"), "--methods", "CACL"])
    (tmp_path / "novel").mkdir()
    assert "verdict rule: ../README.md." in learning.ledger_header([], args)
    (tmp_path / "novel" / "design.md").write_text("the verdict, written before the runs")
    assert "verdict rule: design.md." in learning.ledger_header([], args)
