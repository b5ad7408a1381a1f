"""The pretraining loop: data, model, optimiser, resume, steps, logs, checkpoints."""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cacl_cli import distributed
from cacl_cli.checkpoint import latest_checkpoint, restore, save_checkpoint, training_state
from cacl_cli.config import Config, write_config
from cacl_cli.data.augment import PairAugment
from cacl_cli.data.batches import LoadedBatches, StepBatches
from cacl_cli.data.images import normalise_batch
from cacl_cli.data.pairs import open_source
from cacl_cli.data.world import World, correspondence_pairs
from cacl_cli.device import AMP_SETTINGS, amp_dtype, amp_reason, autocast, precision_name
from cacl_cli.distributed import Place
from cacl_cli.errors import CaclError, Interrupted, RunFailed
from cacl_cli.files import present, remove_stale_temps
from cacl_cli.metrics_log import MetricsLog
from cacl_cli.model.backbone import OUTPUT_STRIDE
from cacl_cli.model.build import compile_encoders, model_from_config
from cacl_cli.model.cacl import CACL, CACLOutput
from cacl_cli.model.diagnostics import SPREAD_WARNING, truth_health, verdict
from cacl_cli.optim import LARS, lars_param_groups, lr_at, scaled_lr
from cacl_cli.pretrained import load_backbone
from cacl_cli.progress import progress_bar
from cacl_cli.run_folder import RunFolder


def build_batches(cfg: Config, place: Place = Place()) -> StepBatches:
    """This rank's share of each step's batch from ``data.path`` (pairs or image folder) or, without
    one, the built-in world."""
    if cfg.data.path:
        source = open_source(Path(cfg.data.path))
    else:
        source = World(cfg.world)
    augment = PairAugment(cfg.augment, cfg.data.size)
    return StepBatches(
        source, augment, cfg.data.batch_size, cfg.data.stride, cfg.run.seed, rank=place.rank
    )


class TruthCheck:
    """Frame pairs of the built-in world with known correspondence, checked on logged steps
    (``model/diagnostics.py``'s ``truth/*`` signals); never used for training."""

    def __init__(self, cfg: Config, device: torch.device) -> None:
        world = World(cfg.world)
        crop = min(cfg.data.size, cfg.world.size) // OUTPUT_STRIDE * OUTPUT_STRIDE
        v, v_plus, truth = correspondence_pairs(
            world, cfg.run.truth_pairs, cfg.data.stride, crop, OUTPUT_STRIDE, seed=cfg.run.seed
        )
        self.v, self.v_plus = normalise_batch(v).to(device), normalise_batch(v_plus).to(device)
        self.truth = torch.from_numpy(truth).to(device)

    @classmethod
    def wanted(cls, cfg: Config, device: torch.device) -> "TruthCheck | None":
        # Under torchrun the momentum encoder's batch shuffle is collective: rank 0 alone
        # cannot run it, so the check is a single-process one.
        on_world = not cfg.data.path and cfg.data.stride < cfg.world.frames
        single = distributed.world_size() == 1
        return cls(cfg, device) if cfg.run.truth_pairs and on_world and single else None

    def __call__(self, model: CACL, step: int) -> dict[str, float]:
        return truth_health(model, self.v, self.v_plus, self.truth, seed=step)


def _start_from(model: CACL, cfg: Config, console: Console) -> None:
    """``model.init``: both encoders' backbones start from a foreign (or cacl) backbone file."""
    path, arch, width = Path(cfg.model.init), cfg.model.arch, cfg.model.width
    backbone, report = load_backbone(path, arch, width)
    try:
        for encoder in (model.online, model.momentum_encoder):
            encoder.backbone.load_state_dict(backbone.state_dict())
    except RuntimeError:
        raise CaclError(
            f"key 'model.init': {path} holds a {report['arch']} of width {report['width']}, "
            f"but this run trains a {arch} of width {width}"
        ) from None
    unused = report["unused"]
    console.print(
        f"init: backbone from {path}: {report['loaded']} tensors loaded "
        f"(prefix '{report['prefix']}'), 0 missing; {len(unused)} in the file not used"
        + (f" ({', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''})" if unused else "")
    )


def _wrap(
    model: CACL, cfg: Config, device: torch.device, place: Place, console: Console
) -> nn.Module:
    """The module the loop calls: the model itself, or under torchrun DDP around it."""
    if not torch.distributed.is_initialized():
        if cfg.model.sync_bn:
            console.print("[yellow]note[/]: model.sync_bn has no effect in a single process")
        return model
    if cfg.model.sync_bn:
        if device.type != "cuda":
            raise CaclError("key 'model.sync_bn' needs CUDA GPUs (torch has no CPU SyncBN)")
        model.online = nn.SyncBatchNorm.convert_sync_batchnorm(model.online)
    # Queues and BN statistics stay per rank: queues are kept equal by gathering keys, and
    # broadcasting 3 x Q x 128 floats every step would cost more than the step's gradients.
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)


def pretrain(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    resume: bool = False,
    console: Console | None = None,
) -> Path | None:
    """Train CACL as ``cfg`` says (checked by ``config.check_run``, as every command does before
    it claims a folder), in ``run_dir``; returns the final checkpoint's path.

    Under torchrun every rank runs this; rank 0 alone writes the run folder and the progress.
    """
    place, device = distributed.start(device)
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        console = (console or Console()) if place.is_main else Console(quiet=True)
        run = set_up(cfg, run_dir, device, place, resume, console)
        train(run)
        run.metrics.close()
        if run.start >= cfg.schedule.steps:
            console.print(f"nothing to do: {run_dir} already finished {cfg.schedule.steps} steps")
        elif place.is_main:
            _print_summary(run_dir, cfg, console)
        return run.good
    finally:
        torch.use_deterministic_algorithms(deterministic)
        distributed.stop()


@dataclass
class Run:
    """Everything the step loop reads and updates: set up once, then passed along."""

    cfg: Config
    run_dir: Path
    device: torch.device
    place: Place
    console: Console
    batches: StepBatches
    model: CACL
    net: nn.Module  # the model, or DDP around it
    optimizer: LARS
    scaler: torch.amp.GradScaler
    dtype: torch.dtype | None  # autocast dtype, None for float32
    schedule: tuple[float, int, int]  # peak lr, steps, warm-up steps
    global_batch: int
    metrics: MetricsLog
    start: int = 0  # the step training starts from (> 0 when resumed)
    good: Path | None = None  # the newest checkpoint known to be complete
    truth: TruthCheck | None = None


def set_up(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    place: Place,
    resume: bool,
    console: Console,
) -> Run:
    """Data, model, optimiser and precision; then the resumed state or ``model.init``."""
    if place.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)
    batches = build_batches(cfg, place)
    torch.manual_seed(cfg.run.seed)  # the same on every rank: shifts and picks stay in step
    model = model_from_config(cfg).to(device)
    if cfg.run.compile:
        compile_encoders(model)
    net = _wrap(model, cfg, device, place, console)  # DDP copies rank 0's weights everywhere
    global_batch = cfg.data.batch_size * place.world_size * cfg.optim.accum_steps
    peak_lr = scaled_lr(cfg.optim.lr, cfg.optim.lr_batch, global_batch)
    optimizer = LARS(
        lars_param_groups(model),
        lr=peak_lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
        trust=cfg.optim.trust,
    )
    if torch.distributed.is_initialized():
        console.print(
            f"torchrun: {place.world_size} process(es), backend "
            f"{torch.distributed.get_backend()}, {global_batch} images per step"
        )
    amp = _started_amp(cfg, run_dir, resume, device)
    dtype = amp_dtype(amp, device)
    if place.is_main:
        console.print(f"precision: {precision_name(dtype)} ({amp_reason(amp, device)})")
    # config.yaml records the precision resolved here, so a resumed run keeps it on any machine.
    cfg = replace(cfg, run=replace(cfg.run, amp=AMP_SETTINGS[dtype]))
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    run = Run(
        cfg,
        run_dir,
        device,
        place,
        console,
        batches,
        model,
        net,
        optimizer,
        scaler,
        dtype,
        (peak_lr, cfg.schedule.steps, cfg.schedule.warmup_steps),
        global_batch,
        MetricsLog(RunFolder(run_dir), events=True, note=console.print),
    )
    _resume_or_init(run, resume)
    run.truth = TruthCheck.wanted(cfg, device) if place.is_main else None
    return run


def _started_amp(cfg: Config, run_dir: Path, resume: bool, device: torch.device) -> str:
    """``run.amp`` as the run uses it. A run resumed from a config.yaml that still says ``auto``
    was started before the precision was recorded, when the CPU trained in float32."""
    legacy = resume and cfg.run.amp == "auto" and present(RunFolder(run_dir).config)
    return "off" if legacy and device.type == "cpu" else cfg.run.amp


def _resume_or_init(run: Run, resume: bool) -> None:
    """Continue from the newest good checkpoint, else start from ``model.init`` if given; then
    the metrics log and config.yaml of the run as it now stands."""
    cfg, run_dir, console = run.cfg, run.run_dir, run.console
    if run.place.is_main:
        for folder in (run_dir, RunFolder(run_dir).checkpoints):
            remove_stale_temps(folder)  # a run killed while writing leaves its temporary files
    found = latest_checkpoint(run_dir, warn=console.print) if resume else None
    if found:
        path, state = found
        run.start, run.good = restore(state, run.model, run.optimizer, run.scaler), path
        console.print(f"resuming {run_dir} from {path.name} (step {run.start})")
    elif cfg.model.init:
        _start_from(run.model, cfg, console)
    if resume and not found:  # a mistyped --out shows here rather than passing unnoticed
        console.print(f"{run_dir} holds no checkpoint yet: starting the run")
    if run.place.is_main:
        run.metrics.truncate_after(run.start)
        write_config(cfg, RunFolder(run_dir).config)


def train(run: Run) -> None:
    """The step loop, from ``run.start`` to the last step: learning rate, momentum update,
    forward and backward, agreement across ranks to go on, the optimiser step, then the metrics
    record and the checkpoint when they are due."""
    cfg, model, optimizer, scaler = run.cfg, run.model, run.optimizer, run.scaler
    steps, accum = cfg.schedule.steps, cfg.optim.accum_steps
    model.train()
    loader = LoadedBatches(
        run.batches,
        run.start * accum,
        steps * accum,
        cfg.data.num_workers,
        pin=run.device.type == "cuda",
    )
    tick = time.perf_counter()
    with loader, progress_bar(run.console, "pretrain") as progress, stop_requests() as stop:
        task = progress.add_task("pretrain", total=steps, completed=run.start, status="")
        for step in range(run.start, steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, *run.schedule)
            optimizer.zero_grad(set_to_none=True)
            model.momentum_update()  # once per optimiser step, before its first micro-batch
            done = step + 1
            logged = run.place.is_main and (done % cfg.run.log_every == 0 or done == steps)
            out, data_time = _accumulated_step(
                run.net, loader, run.batches, accum, scaler, run.dtype, run.device, logged
            )
            halt = _go_on_together(run, out, bool(stop), done)
            scaler.step(optimizer)
            scaler.update()
            step_time, loss = time.perf_counter() - tick, float(out.loss)
            if logged:
                log_step(run, out, step, step_time, data_time)
            if done % cfg.run.checkpoint_every == 0 or done == steps or halt:
                checkpoint(run, done)
            progress.update(task, completed=done, status=f"loss {loss:.3f}")
            if halt and done < steps:
                signum = stop[0] if stop else signal.SIGTERM
                raise Interrupted(
                    f"stopped by {signal.Signals(signum).name} after step {done}; checkpoint "
                    f"saved. Resume with: cacl pretrain --out {run.run_dir} --resume",
                    signum,
                )
            tick = time.perf_counter()


def _go_on_together(run: Run, out: CACLOutput, stop_asked: bool, done: int) -> bool:
    """Whether any rank was asked to stop (then every rank checkpoints and stops); a loss term
    that is not finite on any rank fails the run on every rank, before the optimiser steps."""
    bad = _not_finite(out.terms)
    halt, bad_anywhere = distributed.any_rank([stop_asked, bool(bad)], run.device)
    if bad_anywhere:
        what = (
            f"loss term '{bad}' is {out.terms[bad]}"
            if bad
            else ("another rank's loss is not finite")
        )
        kept = (
            f"the last good checkpoint, {run.good.name}, is kept"
            if run.good
            else ("no checkpoint was written yet")
        )
        raise RunFailed(
            f"step {done}: {what}; stopped ({kept}); try a lower optim.lr or a higher loss.tau"
        )
    return halt


def log_step(run: Run, out: CACLOutput, step: int, step_time: float, data_time: float) -> None:
    """One record of metrics.jsonl (and its CSV and event files): the loss and its terms, the
    step's diagnostics, timings and, on the built-in world, the ground-truth checks."""
    done = step + 1
    record = {
        "step": done,
        "lr": lr_at(step, *run.schedule),
        "loss": float(out.loss),
        **{f"{h}/loss": float(t) for h, t in out.terms.items()},
        **out.diagnostics,
        "step_time": step_time,
        "data_time": data_time,
        "images_per_s": run.global_batch / step_time,
        "precision": precision_name(run.dtype),
    }
    if run.device.type == "cuda":
        record["gpu_peak_gib"] = torch.cuda.max_memory_allocated(run.device) / 2**30
    if run.truth is not None:
        record.update(run.truth(run.model, done))
    run.metrics.write(record)
    _warn_on_collapse(out.diagnostics, done, run.console)


def checkpoint(run: Run, done: int) -> None:
    """Rank 0 writes the checkpoint of step ``done``; no rank goes on before it exists."""
    if run.place.is_main:
        state = training_state(run.model, run.optimizer, run.scaler, done, run.cfg)
        run.good = _save(run.run_dir, done, state, run.cfg.run.keep_checkpoints, run.good)
    distributed.barrier()


def _accumulated_step(
    net: nn.Module,
    loader: Iterator,
    batches: StepBatches,
    accum: int,
    scaler: torch.amp.GradScaler,
    dtype: torch.dtype | None,
    device: torch.device,
    diagnose: bool,
) -> tuple[CACLOutput, float]:
    """Forward and backward over ``accum`` micro-batches; DDP syncs gradients on the last only.

    Returns the micro-batches' mean weighted loss and loss terms (detached) with the last one's
    diagnostics, and the time spent waiting for data.
    """
    terms: dict[str, float] = {}
    data_time = total = 0.0
    for micro in range(accum):
        tick = time.perf_counter()
        v, v_plus = batches.finish(next(loader), device)
        data_time += time.perf_counter() - tick
        last = micro == accum - 1
        no_sync = net.no_sync() if isinstance(net, DistributedDataParallel) and not last else None
        with no_sync or contextlib.nullcontext(), autocast(dtype, device):
            out = net(v, v_plus, diagnose=diagnose and last)
        scaler.scale(out.loss / accum).backward()
        total += float(out.loss.detach()) / accum
        for name, value in out.terms.items():
            terms[name] = terms.get(name, 0.0) + float(value.detach()) / accum
    mean = CACLOutput(torch.tensor(total), terms, out.diagnostics)  # the weighted loss
    return mean, data_time


@contextlib.contextmanager
def stop_requests() -> Iterator[list[int]]:
    """While training, SIGINT and SIGTERM only record themselves: the loop finishes its step,
    saves a checkpoint and stops (pre-emption). Yields the list the signal number lands in."""
    received: list[int] = []
    handler = lambda signum, frame: received.append(signum)  # noqa: E731
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def _save(run_dir: Path, step: int, state: dict, keep: int, previous: Path | None) -> Path:
    try:
        return save_checkpoint(run_dir, step, state, keep)
    except OSError as err:
        reason = err.strerror or str(err)
        kept = f"the last good one, {previous.name}, is intact" if previous else "none was kept"
        raise RunFailed(
            f"step {step}: could not write a checkpoint in {run_dir}/checkpoints "
            f"({reason}); {kept}; free space or fix permissions, then --resume"
        ) from None


def _not_finite(terms: dict[str, float]) -> str:
    """The name of the first loss term that is NaN or infinite, or ''."""
    return next((name for name, value in terms.items() if not math.isfinite(value)), "")


def _warn_on_collapse(diagnostics: dict[str, float], step: int, console: Console) -> None:
    for key, value in diagnostics.items():
        if key.endswith("/spread") and value < SPREAD_WARNING:
            console.print(
                f"[yellow]warning[/]: step {step}: {key} is {value:.3f}; the "
                f"{key.split('/')[0]} head's outputs are collapsing toward one point"
            )


def _print_summary(run_dir: Path, cfg: Config, console: Console) -> None:
    records = MetricsLog(RunFolder(run_dir)).records()
    if not records:
        return
    first, last = records[0], records[-1]
    table = Table(title=f"{run_dir}: first and last logged step")
    table.add_column("metric")
    table.add_column(f"step {first['step']}", justify="right")
    table.add_column(f"step {last['step']}", justify="right")
    for key in last:
        if key != "step" and isinstance(last[key], float):
            table.add_row(key, f"{first.get(key, float('nan')):.4g}", f"{last[key]:.4g}")
    console.print(table)
    problems = verdict(first, last, cfg.data.batch_size)
    if problems:
        console.print(f"[bold yellow]health: check this run[/]: {'; '.join(problems)} (README)")
    else:
        console.print(
            "[bold green]health: no sign of a dead or cheating head[/] (spreads, in-batch "
            "retrieval and, on the built-in world, ground-truth matches; README)"
        )
    floor = f"cacl probe --random-init --set model.arch={cfg.model.arch} " + (
        f"--set model.width={cfg.model.width}"
    )
    console.print(f"next: cacl probe --checkpoint {run_dir}   (the floor: {floor})")
