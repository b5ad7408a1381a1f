"""The training loop itself: set-up, the step loop's schedule and records, checkpoints, stops."""

import json

import pytest
import torch
from rich.console import Console

from cacl_cli.checkpoint import list_checkpoints
from cacl_cli.config import resolve
from cacl_cli.distributed import Place
from cacl_cli.errors import RunFailed
from cacl_cli.optim import lr_at
from cacl_cli.training import set_up, train

TINY = [
    "model.width=8",
    "data.size=32",
    "world.size=40",
    "data.batch_size=4",
    "data.num_workers=0",
    "moco.queue_size=16",
    "moco.cycle_queue_size=16",
    "moco.pixels_per_image=2",
    "run.truth_pairs=0",
]


def _run(tmp_path, *overrides, resume=False):
    cfg = resolve("tiny-world", TINY + list(overrides))
    return set_up(cfg, tmp_path / "run", torch.device("cpu"), Place(), resume, Console(quiet=True))


def test_the_loop_follows_the_schedule_logs_and_checkpoints_when_due(tmp_path):
    run = _run(
        tmp_path,
        "schedule.steps=4",
        "schedule.warmup_steps=2",
        "run.log_every=2",
        "run.checkpoint_every=3",
        "run.keep_checkpoints=5",
    )
    assert run.start == 0 and (tmp_path / "run" / "config.yaml").is_file()
    train(run)
    run.metrics.close()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [2, 4]
    peak, steps, warmup = run.schedule
    assert [r["lr"] for r in records] == [lr_at(k, peak, steps, warmup) for k in (1, 3)]
    assert {"global/loss", "pixel/loss", "cycle/loss", "global/spread"} <= set(records[0])
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == [
        "step-0000003.pt",
        "step-0000004.pt",
    ]  # every 3 steps, and the last


def test_set_up_resumes_from_the_newest_checkpoint(tmp_path):
    first = _run(tmp_path, "schedule.steps=2")
    train(first)
    first.metrics.close()
    again = _run(tmp_path, "schedule.steps=3", resume=True)
    assert again.start == 2 and again.good.name == "step-0000002.pt"
    torch.testing.assert_close(again.model.state_dict(), first.model.state_dict())


def test_a_loss_that_is_not_finite_fails_the_run_before_the_optimiser_steps(tmp_path):
    run = _run(tmp_path, "schedule.steps=2")
    stem, *rest = run.model.online.parameters()
    with torch.no_grad():
        stem.fill_(float("nan"))
    before = [p.detach().clone() for p in rest]
    with pytest.raises(RunFailed, match="step 1: loss term '.*' is nan; stopped .*no checkpoint"):
        train(run)
    assert all(torch.equal(a, b) for a, b in zip(before, rest))  # the optimiser never stepped
    assert not list_checkpoints(tmp_path / "run")
