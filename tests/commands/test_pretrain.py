"""`cacl pretrain` end to end: run folder, learning signal, exact resume, one-line errors."""

import json

import pytest
import torch

from cacl_cli.checkpoint import list_checkpoints, load_checkpoint
from cacl_cli.config import resolve
from cacl_cli.training import pretrain
from tests.conftest import TINY, pretrained, run_cacl, sets


def read_metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_run_writes_config_metrics_and_checkpoints(tmp_path):
    run = tmp_path / "run"
    result = run_cacl(
        "pretrain",
        "--preset",
        "tiny-world",
        "--out",
        run,
        *sets("schedule.steps=6", "run.checkpoint_every=3"),
    )
    assert result.returncode == 0, result.stderr
    assert "pretrain" in result.stdout  # the progress display
    config = resolve(str(run / "config.yaml"))
    assert config.schedule.steps == 6 and config.model.width == 8
    records = read_metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    for key in (
        "loss",
        "global/loss",
        "pixel/loss",
        "cycle/loss",
        "global/top1_batch",
        "global/spread",
        "pixel/same_position",
        "cycle/back_rate",
        "global/chance",
        "cycle/chance",
        "lr",
        "step_time",
        "data_time",
    ):
        assert key in records[-1], key
    # `loss` is what was minimised, the weighted sum; each head's term is logged unweighted
    weights = {h: getattr(config.loss, f"{h}_weight") for h in ("global", "pixel", "cycle")}
    assert weights["pixel"] != 1.0 and weights["cycle"] != 1.0  # tiny-world weights them
    for r in records:
        weighted = sum(w * r[f"{h}/loss"] for h, w in weights.items())
        assert r["loss"] == pytest.approx(weighted, rel=1e-5)
    assert [p.name for p in list_checkpoints(run)] == ["step-0000003.pt", "step-0000006.pt"]
    state = load_checkpoint(run / "checkpoints" / "step-0000006.pt")
    assert state["step"] == 6 and "queues.cycle.features" in state["model"]
    assert "momentum_encoder.backbone.conv1.weight" in state["model"]


def mean_of_last(records, key, n):
    return sum(r[key] for r in records[-n:]) / n


@pytest.mark.slow
@pytest.mark.parametrize("head", ["global"])
def test_training_separates_positives_better_than_no_training(tmp_path, head):
    """The honest signal: after the queue holds only real keys, the trained model's contrastive
    loss sits well below both its chance level and the loss of the same model left untrained."""
    common = TINY + ["schedule.steps=60", "optim.lr=8.0"]
    trained = read_metrics(_train(tmp_path / "trained", common))
    frozen = read_metrics(_train(tmp_path / "frozen", common + ["optim.lr=0.0"]))
    loss_trained = mean_of_last(trained, f"{head}/loss", 20)
    loss_frozen = mean_of_last(frozen, f"{head}/loss", 20)
    chance = trained[-1][f"{head}/chance"]
    print(
        f"{head}/loss trained {loss_trained:.3f}, untrained {loss_frozen:.3f}, chance {chance:.3f}"
    )
    assert loss_trained < loss_frozen - 0.5
    assert loss_trained < chance - 0.5
    assert mean_of_last(trained, f"{head}/spread", 20) > 0.2


def _train(run_dir, overrides):
    pretrain(resolve("tiny-world", overrides), run_dir, torch.device("cpu"))
    return run_dir


def test_resumed_run_ends_with_the_same_weights_as_an_unbroken_one(tmp_path):
    overrides = TINY + [
        "schedule.steps=8",
        "run.checkpoint_every=4",
        "run.deterministic=true",
        "run.keep_checkpoints=5",
    ]
    cfg = resolve("tiny-world", overrides)
    unbroken = tmp_path / "unbroken"
    pretrain(cfg, unbroken, torch.device("cpu"))
    # An interrupted run: the same run stopped after its step-4 checkpoint.
    broken = tmp_path / "broken"
    pretrain(resolve("tiny-world", overrides), broken, torch.device("cpu"))
    (broken / "checkpoints" / "step-0000008.pt").unlink()
    (broken / "checkpoints" / "latest").write_text("step-0000004.pt\n")
    pretrain(resolve(str(broken / "config.yaml")), broken, torch.device("cpu"), resume=True)
    a = load_checkpoint(unbroken / "checkpoints" / "step-0000008.pt")["model"]
    b = load_checkpoint(broken / "checkpoints" / "step-0000008.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert read_metrics(unbroken) == [
        {
            **r,
            "step_time": u["step_time"],
            "data_time": u["data_time"],
            "images_per_s": u["images_per_s"],
        }
        for r, u in zip(read_metrics(broken), read_metrics(unbroken))
    ]


def test_resume_via_cli_keeps_the_saved_config(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=2")
    again = run_cacl("pretrain", "--out", run, "--resume")
    assert again.returncode == 0, again.stderr
    assert "already finished 2 steps" in again.stdout
    refused = run_cacl("pretrain", "--out", run, "--resume", "--set", "optim.lr=2")
    assert (
        refused.returncode == 2 and "'optim.lr' is 2.0 here but 16.0 in the run" in refused.stderr
    )


def one_line_error(result, exit_code=2):
    assert result.returncode == exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--preset", "tiny-wrld"], "unknown preset 'tiny-wrld' (did you mean 'tiny-world'?)"),
        (["--set", "optim.lrr=1"], "unknown key 'optim.lrr' (did you mean 'optim.lr'?)"),
        (["--set", "data.batch_size=0"], "'data.batch_size' must be from 1 to 65536"),
        (["--set", "data.batch_size=many"], "'data.batch_size' must be int"),
        (["--set", "data.stride=40"], "'data.stride' is 40 but clips have 32 frames"),
        (["--preset", "missing/file.yaml"], "preset file missing/file.yaml does not exist"),
        (["--device", "tpu"], "--device tpu: use auto, cpu, cuda, cuda:N or mps"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, expected):
    line = one_line_error(run_cacl("pretrain", "--out", tmp_path / "run", *args))
    assert expected in line


def test_yaml_syntax_error_names_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {width: [8\n")
    assert "bad.yaml line" in one_line_error(
        run_cacl("pretrain", "--preset", bad, "--out", tmp_path / "r")
    )


def test_existing_run_is_not_overwritten(tmp_path):
    run = tmp_path / "run"
    pretrained(run, "schedule.steps=1")
    before = (run / "checkpoints" / "step-0000001.pt").read_bytes()
    assert "pass --resume" in one_line_error(run_cacl("pretrain", "--out", run))
    assert (run / "checkpoints" / "step-0000001.pt").read_bytes() == before


def test_debug_env_shows_the_traceback(tmp_path):
    result = run_cacl("pretrain", "--preset", "nope", "--out", tmp_path, env={"CACL_DEBUG": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_nan_loss_stops_with_the_last_good_checkpoint(tmp_path, monkeypatch):
    from cacl_cli.errors import CaclError
    from cacl_cli.model import cacl as cacl_module

    cfg = resolve("tiny-world", TINY + ["schedule.steps=6", "run.checkpoint_every=2"])
    original = cacl_module.CACL.forward
    calls = {"n": 0}

    def poisoned(self, v, v_plus, **kwargs):
        out = original(self, v, v_plus, **kwargs)
        calls["n"] += 1
        if calls["n"] == 4:
            out.terms["cycle"] = out.terms["cycle"] * float("nan")
        return out

    monkeypatch.setattr(cacl_module.CACL, "forward", poisoned)
    with pytest.raises(CaclError, match="step 4: loss term 'cycle' is nan"):
        pretrain(cfg, tmp_path, torch.device("cpu"))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-0000002.pt"]
    assert load_checkpoint(tmp_path / "checkpoints" / "step-0000002.pt")["step"] == 2


def test_init_starts_both_encoders_from_a_moco_v2_checkpoint(tmp_path):
    from cacl_cli.model.backbone import build_backbone

    torch.manual_seed(5)
    foreign = build_backbone("resnet18", 8).state_dict()
    moco = {f"module.encoder_q.{k}": v for k, v in foreign.items()}
    moco["module.encoder_q.fc.0.weight"] = torch.zeros(8, 8)  # MoCo-v2's MLP: not a backbone key
    torch.save({"state_dict": moco, "epoch": 800}, tmp_path / "moco.pth.tar")
    run = tmp_path / "run"
    # lr 0: after one step the online backbone is still exactly the file's
    args = sets("schedule.steps=1", "optim.lr=0.0")
    result = run_cacl("pretrain", "--out", run, "--init", tmp_path / "moco.pth.tar", *args)
    assert result.returncode == 0, result.stderr
    assert "prefix 'module.encoder_q.'), 0 missing; 1 in the file not used" in result.stdout
    state = load_checkpoint(run / "checkpoints" / "step-0000001.pt")["model"]
    for name in ("conv1.weight", "layer4.1.conv2.weight", "layer2.0.bn1.bias"):
        assert torch.equal(state[f"online.backbone.{name}"], foreign[name]), name
        # m x + (1 - m) x: equal up to rounding
        torch.testing.assert_close(state[f"momentum_encoder.backbone.{name}"], foreign[name])
    missing = run_cacl("pretrain", "--out", tmp_path / "r2", "--init", tmp_path / "nope.pt")
    assert missing.returncode == 2 and "nope.pt is not a file" in missing.stderr


def test_accumulated_steps_update_the_momentum_encoder_once_per_step(tmp_path):
    run = tmp_path / "run"
    overrides = ["schedule.steps=2", "run.checkpoint_every=1", "optim.accum_steps=2"]
    result = run_cacl("pretrain", "--out", run, *sets(*overrides, "data.batch_size=4"))
    assert result.returncode == 0, result.stderr
    first, second = (
        load_checkpoint(run / "checkpoints" / f"step-000000{s}.pt")["model"] for s in (1, 2)
    )
    m = resolve(str(run / "config.yaml")).moco.momentum
    name = "backbone.layer3.0.conv1.weight"
    expected = m * first[f"momentum_encoder.{name}"] + (1 - m) * first[f"online.{name}"]
    torch.testing.assert_close(second[f"momentum_encoder.{name}"], expected)
    assert int(second["queues.global.ptr"]) == 2 * 2 * 4  # steps x micro-batches x batch
    # the learning rate follows the batch of the whole step: 8 images, not 4
    lr = read_metrics(run)[-1]["lr"]
    single = tmp_path / "single"
    pretrained(single, overrides[0], "data.batch_size=8")
    assert lr == pytest.approx(read_metrics(single)[-1]["lr"])


def test_metrics_reach_csv_and_tensorboard(tmp_path):
    run = pretrained(tmp_path / "run", "schedule.steps=3")
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "step" and "global/loss" in header
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + len(read_metrics(run))
    event_accumulator = pytest.importorskip(
        "tensorboard.backend.event_processing.event_accumulator",
        reason="the tensorboard extra is not installed (pip install 'cacl-video[tensorboard]')",
    )
    events = event_accumulator.EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    losses = events.Scalars("global/loss")
    assert [e.step for e in losses] == [r["step"] for r in read_metrics(run)]
    assert losses[-1].value == pytest.approx(read_metrics(run)[-1]["global/loss"], rel=1e-6)


def test_data_without_a_preset_says_which_preset_trains(tmp_path):
    (tmp_path / "empty").mkdir()
    done = run_cacl("pretrain", "--data", tmp_path / "empty", "--out", tmp_path / "run")
    assert "--data " in done.stdout and "training with preset tiny-world" in done.stdout
    assert "model.width 16" in done.stdout and "give --preset to choose another" in done.stdout


def test_a_presets_own_data_path_that_is_not_here_is_named_with_its_preset(tmp_path):
    done = run_cacl("pretrain", "--preset", "r18-kinetics", "--out", tmp_path / "q", cwd=tmp_path)
    message = one_line_error(done)
    assert "preset r18-kinetics's data.path names 'kinetics-pairs' for the pairs" in message
    assert "cacl extract-pairs VIDEOS --out kinetics-pairs" in message and "--data" in message
    assert not (tmp_path / "q").exists()
    done = run_cacl("pretrain", "--set", "data.path=mine", "--out", tmp_path / "q", cwd=tmp_path)
    assert "--set data.path names 'mine' for the pairs" in one_line_error(done)  # not the preset


def _cpu_has(monkeypatch, *flags):
    from cacl_cli import device

    monkeypatch.setattr(device, "cpu_flags", lambda: frozenset(flags))


@pytest.mark.parametrize(
    "flags,amp,precision",
    [
        (("avx512f", "avx512_bf16"), "bf16", "bfloat16"),
        (("amx_tile", "amx_bf16"), "bf16", "bfloat16"),
        (("avx2", "avx512f"), "off", "float32"),
    ],
)
def test_run_amp_auto_trains_in_bf16_only_on_a_cpu_with_native_bf16_and_says_so(
    tmp_path, monkeypatch, flags, amp, precision
):
    _cpu_has(monkeypatch, *flags)
    done = run_cacl(
        "pretrain",
        "--out",
        tmp_path / "run",
        "--device",
        "cpu",
        *sets("schedule.steps=2", "run.amp=auto"),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("precision: ") == 1 and f"precision: {precision}" in done.stdout
    assert resolve(str(tmp_path / "run" / "config.yaml")).run.amp == amp
    assert {r["precision"] for r in read_metrics(tmp_path / "run")} == {precision}
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-0000002.pt")
    assert state["config"]["run"]["amp"] == amp


def test_a_resumed_run_keeps_its_precision_on_another_cpu_unless_told_otherwise(
    tmp_path, monkeypatch
):
    run = tmp_path / "run"
    command = [
        "pretrain",
        "--out",
        run,
        "--device",
        "cpu",
        "--resume",
        *sets("run.amp=auto", "run.checkpoint_every=1"),
    ]
    _cpu_has(monkeypatch, "avx512_bf16")
    assert run_cacl(*command, "--set", "schedule.steps=2").returncode == 0
    _cpu_has(monkeypatch, "avx2")  # requeued on a machine without native bf16: still bf16
    done = run_cacl(*command, "--set", "schedule.steps=3")
    assert done.returncode == 0, done.stderr
    assert "precision: bfloat16 (run.amp=bf16)" in done.stdout
    assert [r["precision"] for r in read_metrics(run)] == ["bfloat16"] * 3
    done = run_cacl(*command, "--set", "schedule.steps=4", "--set", "run.amp=off")
    assert done.returncode == 0, done.stderr
    assert [r["precision"] for r in read_metrics(run)][-1] == "float32"
    assert resolve(str(run / "config.yaml")).run.amp == "off"


def test_a_run_whose_config_predates_recorded_precision_resumes_in_float32_on_the_cpu(
    tmp_path, monkeypatch
):
    """Before the precision was recorded, config.yaml said ``auto`` and the CPU trained float32."""
    run = pretrained(tmp_path / "run", "schedule.steps=2", "run.amp=off")
    config = run / "config.yaml"
    config.write_text(
        config.read_text().replace("amp: 'off'", "amp: auto").replace("amp: off", "amp: auto")
    )
    assert resolve(str(config)).run.amp == "auto"
    _cpu_has(monkeypatch, "avx512_bf16")
    done = run_cacl(
        "pretrain", "--out", run, "--resume", "--device", "cpu", "--set", "schedule.steps=3"
    )
    assert done.returncode == 0, done.stderr
    assert "precision: float32" in done.stdout
    assert [r["precision"] for r in read_metrics(run)] == ["float32"] * 3
