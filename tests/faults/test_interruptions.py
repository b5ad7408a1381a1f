"""Runs killed or stopped at any point lose nothing and resume to the same weights."""

import csv
import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from cacl_cli.checkpoint import list_checkpoints, load_checkpoint
from cacl_cli.config import resolve
from cacl_cli.errors import CaclError
from cacl_cli.training import pretrain
from tests.conftest import TINY, pretrained, run_cacl, sets

pytestmark = [
    pytest.mark.slow,  # kills, signals and resumes of real processes
    pytest.mark.xdist_group("test_interruptions"),  # one worker builds the module's fixtures once
]

# Deterministic, and with queues big enough (2 x 51 MB) that a checkpoint write takes long enough
# to be caught in the middle by a kill.
EXACT = [
    "schedule.steps=10",
    "run.checkpoint_every=2",
    "run.deterministic=true",
    "moco.queue_size=100000",
    "run.keep_checkpoints=10",
]


def start(run_dir, *extra):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cacl_cli",
            "pretrain",
            "--out",
            str(run_dir),
            *sets(*EXACT),
            *extra,
        ],
        process_group=0,  # killpg reaches its workers; a new session would be scheduled apart
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.003)
    return False


TIMING = ("step_time", "data_time", "images_per_s")


def final_model(run_dir):
    return load_checkpoint(run_dir / "checkpoints" / "step-0000010.pt")["model"]


def metrics_without_timing(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture(scope="module")
def unbroken(tmp_path_factory):
    run = tmp_path_factory.mktemp("unbroken")
    pretrained(run, *EXACT)
    return final_model(run), metrics_without_timing(run)


def csv_matches_jsonl(run_dir):
    """metrics.csv holds the JSONL's records, one row each, in order, under one header."""
    with open(run_dir / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(records)
    for row, record in zip(rows, records):
        words = {k: v for k, v in record.items() if isinstance(v, str)}  # the precision
        assert {k: row[k] for k in words} == words
        assert {k: float(v) for k, v in row.items() if k not in words} == pytest.approx(
            {k: v for k, v in record.items() if k not in words}
        )
    return True


def logged_steps(run_dir):
    path = run_dir / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.parametrize("kill_when", ["after step 3", "after step 7", "during a checkpoint write"])
def test_sigkill_then_resume_gives_the_same_weights(tmp_path, unbroken, kill_when):
    run = tmp_path / "run"
    proc = start(run)
    if kill_when == "during a checkpoint write":
        caught = wait_for(
            lambda: any(p.name.endswith(".tmp") for p in (run / "checkpoints").glob(".step-*"))
        )
    else:
        step = int(kill_when.split()[-1])
        caught = wait_for(lambda: logged_steps(run) >= step)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert caught, f"the run ended before it could be killed {kill_when}"
    assert not (run / "checkpoints" / "step-0000010.pt").exists()
    resumed = run_cacl("pretrain", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert not list((run / "checkpoints").glob(".*.tmp"))
    weights, metrics = unbroken
    got = final_model(run)
    for key, value in weights.items():  # networks, momentum network, queues and pointers
        assert torch.equal(value, got[key]), key
    assert metrics_without_timing(run) == metrics
    assert csv_matches_jsonl(run)  # the table survived the kill too


def test_sigterm_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    run = tmp_path / "run"
    proc = start(
        run,
        "--set",
        "schedule.steps=400",
        "--set",
        "run.checkpoint_every=1000",
        "--set",
        "moco.queue_size=128",
    )
    assert wait_for(lambda: logged_steps(run) >= 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "stopped by SIGTERM after step" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    [saved] = list_checkpoints(run)
    assert 2 <= load_checkpoint(saved)["step"] < 400


@pytest.mark.parametrize("failure", [errno.ENOSPC, errno.EACCES])
def test_a_full_or_read_only_disk_stops_with_the_last_checkpoint_intact(
    tmp_path, monkeypatch, failure
):
    from cacl_cli import checkpoint

    cfg = resolve("tiny-world", TINY + ["schedule.steps=6", "run.checkpoint_every=2"])
    real_save, calls = torch.save, {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the step-4 checkpoint
            raise OSError(failure, os.strerror(failure), str(f))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint.torch, "save", failing_save)
    with pytest.raises(CaclError) as err:
        pretrain(cfg, tmp_path, torch.device("cpu"))
    message = str(err.value)
    assert "step 4: could not write a checkpoint" in message and os.strerror(failure) in message
    assert "step-0000002.pt, is intact" in message
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000002.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "step-0000002.pt")["step"] == 2
    assert not list((tmp_path / "checkpoints").glob(".*.tmp"))


def test_truncated_newest_checkpoint_is_skipped_on_resume(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=4", "run.checkpoint_every=2", "run.keep_checkpoints=3")
    newest = run / "checkpoints" / "step-0000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])
    resumed = run_cacl("pretrain", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping damaged checkpoint" in resumed.stdout and "step-0000004.pt" in resumed.stdout
    assert "resuming" in resumed.stdout and "step 2" in resumed.stdout
    assert load_checkpoint(newest)["step"] == 4  # rewritten whole


def test_a_checkpoint_holding_nan_is_skipped_on_resume_never_called_good(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=4", "run.checkpoint_every=2", "run.keep_checkpoints=3")
    newest = run / "checkpoints" / "step-0000004.pt"
    state = torch.load(newest, weights_only=True)
    next(iter(state["model"].values())).fill_(float("nan"))
    torch.save(state, newest)
    resumed = run_cacl("pretrain", "--out", run, "--resume", "--set", "schedule.steps=5")
    assert resumed.returncode == 0, resumed.stderr
    assert "skipping damaged checkpoint" in resumed.stdout and "NaN or inf" in resumed.stdout
    assert "resuming" in resumed.stdout and "step 2" in resumed.stdout


def test_a_metrics_line_torn_by_a_kill_is_dropped_on_resume(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=4", "run.checkpoint_every=2", "run.keep_checkpoints=3")
    (run / "checkpoints" / "step-0000004.pt").unlink()
    (run / "checkpoints" / "latest").write_text("step-0000002.pt\n")
    metrics = run / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 5, "loss": 1')  # half an append
    table = run / "metrics.csv"
    table.write_text(table.read_text() + "5,0.1")  # ... and half a row
    resumed = run_cacl("pretrain", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    steps = [json.loads(line)["step"] for line in metrics.read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    assert csv_matches_jsonl(run)


def test_a_requeued_job_reruns_the_same_command_until_the_run_is_done(tmp_path, unbroken):
    """SLURM's --requeue: the same command line, killed, run again, and again once finished."""
    run = tmp_path / "run"
    same = ["--preset", "tiny-world", "--resume", *sets(*EXACT)]
    proc = start(run, "--preset", "tiny-world", "--resume")
    caught = wait_for(lambda: logged_steps(run) >= 3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert caught and not (run / "checkpoints" / "step-0000010.pt").exists()
    again = run_cacl("pretrain", "--out", run, *same)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stdout
    weights, metrics = unbroken
    got = final_model(run)
    assert all(torch.equal(value, got[key]) for key, value in weights.items())
    assert metrics_without_timing(run) == metrics
    finished = run_cacl("pretrain", "--out", run, *same)
    assert finished.returncode == 0 and "nothing to do" in finished.stdout
    changed = run_cacl("pretrain", "--out", run, *same, "--set", "optim.lr=2")
    assert changed.returncode == 2
    assert "'optim.lr' is 2.0 here but 16.0 in the run" in changed.stderr
    longer = run_cacl("pretrain", "--out", run, *same, "--set", "schedule.steps=12")
    assert longer.returncode == 0, longer.stderr
    assert (run / "checkpoints" / "step-0000012.pt").is_file()
    assert "steps: 12" in (run / "config.yaml").read_text()  # the change is recorded


@pytest.fixture(scope="module")
def tar_pairs(tmp_path_factory):
    """A few real clips extracted into tar shards."""
    from tests.commands.test_extract_pairs import copies
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("tar")
    videos = copies(root / "videos", SHARED_DATA, 6, "realshort.mp4")
    done = run_cacl(
        "extract-pairs",
        videos,
        "--out",
        root / "pairs",
        "--format",
        "tar",
        "--stride",
        "2",
        "--frames-per-clip",
        "3",
        "--short-side",
        "64",
    )
    assert done.returncode == 0, done.stderr
    return root / "pairs"


def test_sigkill_then_resume_is_bit_identical_on_tar_shards_read_by_two_workers(
    tmp_path, tar_pairs
):
    loader = ["--data", str(tar_pairs), "--set", "data.num_workers=2"]
    unbroken_run = tmp_path / "unbroken"
    assert run_cacl("pretrain", "--out", unbroken_run, *sets(*EXACT), *loader).returncode == 0
    run = tmp_path / "run"
    proc = start(run, *loader)
    # two loader workers start slowly on a busy machine: wait long, return at once when seen
    caught = wait_for(lambda: logged_steps(run) >= 4, seconds=600)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert caught, "the run logged no 4 steps in 10 minutes"
    assert not (run / "checkpoints" / "step-0000010.pt").exists(), "killed too late to resume"
    resumed = run_cacl("pretrain", "--out", run, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    weights, got = final_model(unbroken_run), final_model(run)
    for key, value in weights.items():
        assert torch.equal(value, got[key]), key
    assert metrics_without_timing(run) == metrics_without_timing(unbroken_run)


@pytest.mark.slow
def test_a_killed_probes_cached_features_are_never_credited_to_the_next_model(tmp_path):
    """Probe checkpoint A with features on disk, killed; then --random-init into the same --out:
    its results must be those of a random init probed in a fresh folder, not of A's features."""
    run = pretrained(tmp_path / "a", "schedule.steps=4")
    probe = [
        "--set",
        "model.width=8",
        "--set",
        "eval.cache=disk",
        "--set",
        "eval.cache_gb=0",
        "--set",
        "eval.world_train_images=24",
        "--set",
        "eval.world_val_images=8",
    ]
    out = tmp_path / "probe"
    killed = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cacl_cli",
            "probe",
            "--checkpoint",
            str(run),
            "--out",
            str(out),
            *probe,
            "--set",
            "schedule.epochs=1000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600  # a ceiling for a busy machine; progress ends the wait
    while killed.poll() is None and time.monotonic() < deadline:
        if len(list((out / "feature-cache").rglob("*.pt"))) >= 24:
            break  # every training image's features are on disk
        time.sleep(0.1)
    killed.kill()
    killed.wait()
    assert len(list((out / "feature-cache").rglob("*.pt"))) >= 24
    settings = [*probe, "--set", "schedule.epochs=2"]
    again = run_cacl("probe", "--random-init", "--out", out, "--overwrite", *settings)
    fresh = run_cacl("probe", "--random-init", "--out", tmp_path / "fresh", *settings)
    assert again.returncode == 0 and fresh.returncode == 0, again.stderr + fresh.stderr
    heads = [torch.load(f / "classifier.pt", weights_only=True) for f in (out, tmp_path / "fresh")]
    assert heads[0].keys() == heads[1].keys()
    for name in heads[0]:  # trained on A's cached features, the classifier differed
        assert torch.equal(heads[0][name], heads[1][name]), name
