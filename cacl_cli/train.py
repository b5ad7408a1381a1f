"""The pretraining loop: data, model, optimiser, resume, steps, logs, checkpoints."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import time
from pathlib import Path
from typing import Iterator

import torch
from rich.console import Console
from rich.table import Table

from cacl_cli.checkpoint import latest_checkpoint, save_checkpoint
from cacl_cli.config import Config, write_config
from cacl_cli.data.augment import augment_from_config
from cacl_cli.data.batches import StepBatches, step_loader
from cacl_cli.data.pairs import open_source
from cacl_cli.data.world import World, WorldConfig
from cacl_cli.device import amp_dtype, autocast
from cacl_cli.errors import CaclError, Interrupted
from cacl_cli.files import remove_stale_temps, write_text_atomic
from cacl_cli.model.cacl import CACL, build_model
from cacl_cli.progress import progress_bar
from cacl_cli.optim import LARS, lars_param_groups, lr_schedule, scaled_lr

SPREAD_WARNING = 0.1  # below this the head's outputs are close to one point: collapse


class MetricsLog:
    """``metrics.jsonl``: one JSON record per logged step; a resume drops records past its step."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def truncate_after(self, step: int) -> None:
        if self.path.is_file():
            kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))

    def write(self, record: dict) -> None:
        with open(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def _step_of(line: str) -> float:
    """A record's step; a line torn by a kill during its append counts as never written."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def build_batches(cfg: Config) -> StepBatches:
    """Batches from ``data.path`` (pairs folder or image folder) or, without one, the world."""
    if cfg.data.path:
        source = open_source(Path(cfg.data.path))
    else:
        source = World(WorldConfig.from_config(cfg.world))
        if not 0 <= cfg.data.stride < cfg.world.frames:
            raise CaclError(
                f"key 'data.stride' is {cfg.data.stride} but clips have "
                f"{cfg.world.frames} frames (world.frames); use a smaller stride"
            )
    augment = augment_from_config(cfg.augment, cfg.data.size)
    return StepBatches(source, augment, cfg.data.batch_size, cfg.data.stride, cfg.run.seed)


def _training_state(
    model: CACL, optimizer: LARS, scaler: torch.amp.GradScaler, step: int, cfg: Config
) -> dict:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": 1,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "config": cfg.plain(),
        "rng": rng,
    }


def _restore(state: dict, model: CACL, optimizer: LARS, scaler: torch.amp.GradScaler) -> int:
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0]
        raise CaclError(
            f"checkpoint does not fit this model ({reason[:120]}); resume with the run's own config"
        ) from None
    scaler.load_state_dict(state.get("scaler", {}))
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def pretrain(
    cfg: Config,
    run_dir: Path,
    device: torch.device,
    resume: bool = False,
    console: Console | None = None,
) -> Path:
    """Train CACL as ``cfg`` says, in ``run_dir``; returns the final checkpoint's path."""
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.run.deterministic:
        torch.use_deterministic_algorithms(True)

    # ---------------------------------------------------------------- data
    batches = build_batches(cfg)

    # ---------------------------------------------------------------- model and optimiser
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg).to(device)
    peak_lr = scaled_lr(cfg.optim.lr, cfg.optim.lr_batch, cfg.data.batch_size)
    rates = lr_schedule(peak_lr, cfg.schedule.steps, cfg.schedule.warmup_steps)
    optimizer = LARS(
        lars_param_groups(model),
        lr=peak_lr,
        momentum=cfg.optim.momentum,
        weight_decay=cfg.optim.weight_decay,
        trust=cfg.optim.trust,
    )
    dtype = amp_dtype(cfg.run.amp, device)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

    # ---------------------------------------------------------------- optionally resume
    start = 0
    metrics = MetricsLog(run_dir / "metrics.jsonl")
    for folder in (run_dir, run_dir / "checkpoints"):
        remove_stale_temps(folder)  # a run killed while writing leaves its temporary files
    found = latest_checkpoint(run_dir, warn=console.print) if resume else None
    if found:
        path, state = found
        start = _restore(state, model, optimizer, scaler)
        console.print(f"resuming {run_dir} from {path.name} (step {start})")
    metrics.truncate_after(start)
    write_config(cfg, run_dir / "config.yaml")

    # ---------------------------------------------------------------- training
    steps = cfg.schedule.steps
    good = found[0] if found else None  # the newest checkpoint known to be complete
    model.train()
    loader = step_loader(batches, start, steps, cfg.data.num_workers)
    tick = time.perf_counter()
    with progress_bar(console, "pretrain") as progress, stop_requests() as stop:
        task = progress.add_task("pretrain", total=steps, completed=start, status="")
        for step, (v, v_plus) in zip(range(start, steps), loader):
            data_time = time.perf_counter() - tick
            for group in optimizer.param_groups:
                group["lr"] = rates[step]
            with autocast(dtype, device):
                out = model(v.to(device, non_blocking=True), v_plus.to(device, non_blocking=True))
            _stop_if_not_finite(out.terms, step, run_dir)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(out.loss).backward()
            scaler.step(optimizer)
            scaler.update()
            done = step + 1
            step_time = time.perf_counter() - tick
            loss = float(out.loss.detach())

            if done % cfg.run.log_every == 0 or done == steps:
                record = {
                    "step": done,
                    "lr": rates[step],
                    "loss": loss,
                    **{f"{h}/loss": float(t.detach()) for h, t in out.terms.items()},
                    **out.diagnostics,
                    "step_time": step_time,
                    "data_time": data_time,
                    "images_per_s": cfg.data.batch_size / step_time,
                }
                metrics.write(record)
                _warn_on_collapse(out.diagnostics, done, console)
            if done % cfg.run.checkpoint_every == 0 or done == steps or stop:
                state = _training_state(model, optimizer, scaler, done, cfg)
                good = _save(run_dir, done, state, cfg.run.keep_checkpoints, good)
            progress.update(task, completed=done, status=f"loss {loss:.3f}")
            if stop and done < steps:
                raise Interrupted(
                    f"stopped by {signal.Signals(stop[0]).name} after step {done}; "
                    f"checkpoint saved. Resume with: cacl pretrain --out {run_dir} "
                    "--resume",
                    stop[0],
                )
            tick = time.perf_counter()
    if start >= steps:
        console.print(f"nothing to do: {run_dir} already finished {steps} steps")
    else:
        _print_summary(run_dir, console)
    return good


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
        kept = f"the last good one, {previous.name}, is intact" if previous else "none was kept"
        raise CaclError(
            f"step {step}: could not write a checkpoint in {run_dir}/checkpoints "
            f"({err.strerror or err}); {kept}; free space or fix permissions, "
            "then --resume"
        ) from None


def _stop_if_not_finite(terms: dict[str, torch.Tensor], step: int, run_dir: Path) -> None:
    for name, value in terms.items():
        if not math.isfinite(float(value.detach())):
            raise CaclError(
                f"step {step + 1}: loss term '{name}' is {float(value.detach())}; stopped with "
                f"the last good checkpoint kept in {run_dir}/checkpoints; "
                "try a lower optim.lr or a higher loss.tau"
            )


def _warn_on_collapse(diagnostics: dict[str, float], step: int, console: Console) -> None:
    for key, value in diagnostics.items():
        if key.endswith("/spread") and value < SPREAD_WARNING:
            console.print(
                f"[yellow]warning[/]: step {step}: {key} is {value:.3f}; the "
                f"{key.split('/')[0]} head's outputs are collapsing toward one point"
            )


def _print_summary(run_dir: Path, console: Console) -> None:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    if not lines:
        return
    first, last = json.loads(lines[0]), json.loads(lines[-1])
    table = Table(title=f"{run_dir}: first and last logged step")
    table.add_column("metric")
    table.add_column(f"step {first['step']}", justify="right")
    table.add_column(f"step {last['step']}", justify="right")
    for key in last:
        if key != "step" and isinstance(last[key], float):
            table.add_row(key, f"{first.get(key, float('nan')):.4g}", f"{last[key]:.4g}")
    console.print(table)
