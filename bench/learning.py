"""The learning benchmark: Table 1 of the paper on the built-in world, and real video.

Each method is pretrained with the same budget (steps, batch, schedule, seeds) and its backbone
judged by three yardsticks: the linear probe on held-out labelled frames of the same world, at
several points of training; at the last point, DAVIS label propagation (`cacl propagate`, J&F) on
real video, and the same propagation on held-out clips of the world (`cacl world --davis-clips`),
where the truth is exact and no world-to-real step stands between training and test. Random
init is the floor every method must clear; MoCo-v2 (the global head alone, no pixel shuffle) is
the baseline CACL must beat. Each row also carries the run's ground-truth diagnostics (`truth/*`
in metrics.jsonl) at its last step. `--propagate-set` changes both propagations alike, e.g.
`propagate.layer=layer3` to read res4 instead of the last layer.

    python bench/learning.py                         # the full table: hours on a CPU
    python bench/learning.py --device cuda --jobs 5  # minutes on one GPU
    python bench/learning.py --quick                 # seconds: checks the plumbing only
    python bench/learning.py --ledger bench/experiments/2026-12-06-deciding --methods MoCo-v2 CACL \
        --seeds 0 1 2 3 4 5 6 7 8 9 10 11 --steps 3000 --evals 1 --jobs 2 --device cpu

Writes OUT/results.jsonl (one record per evaluation, appended as each finishes), OUT/table.md,
OUT/probe-vs-steps.png, OUT/yardsticks.png (every seed of every yardstick at the last step) and
the world's held-out clips, OUT/world-davis. Rerunning the same command resumes: finished
evaluations are skipped and unfinished pretrain runs continue from their checkpoints.
Ctrl-C or SIGTERM stops it between sessions without losing a run in flight: no new run starts,
each pretrain in flight writes a checkpoint at its step and ends (as `cacl pretrain` does on
either signal), and the same command goes on from there (exit 128 + the signal's number).

``--ledger DIR`` keeps a table that grows across sessions and machines: DIR holds only what is
committed (``recipe.json``, ``results.jsonl``, ``table.md`` with the seed-paired differences of
CACL against MoCo-v2), the pretrain runs go to ``--work`` (``bench/out/ledgers/NAME``). Every cell
is float32 (``run.amp=off``, ``loss.queue_matmul=float32``), carries the commit, the precision,
the CPU and its wall time, and is skipped by a rerun whatever machine wrote it. Cells of another
recipe are refused (``ledger.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from datetime import date
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cacl_cli.api import HEADS, RunFolder, progress_bar, usable_cores  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import ledger as ledgers  # noqa: E402

# name -> the method's preset, layered on the bench's recipe (--preset tiny-world: CACL's row is
# the recipe itself, MoCo-v2's `tiny-world+moco-v2`); None: no pretraining. Each table row states
# what these resolve to (heads, pixel shuffle, positive rule, cycle return, queue sizes).
METHODS: dict[str, str | None] = {
    "random init": None,
    "MoCo-v2": "moco-v2",
    "two heads": "two-heads",
    "CACL": "",
    "CACL, no pixel shuffle": "no-pixel-shuffle",
    "CACL, no pixel head": "no-pixel-head",  # ablation: which dense head moves DAVIS
}
DIAGNOSTICS = {  # metrics.jsonl key -> table column
    "truth/pixel_positive_near": "P+ near",
    "truth/cycle_jump_near": "jump near",
    "truth/cycle_jump_roll_offset": "jump on roll",
    "truth/backbone_position_r2": "position R2",
}
DEFAULT_DAVIS = ROOT.parent / "shared" / "data" / "davis-2016"
QUICK_DAVIS = ROOT.parent / "shared" / "data" / "davis"
QUICK_PRETRAIN = [
    "model.width=8",
    "data.size=32",
    "world.size=40",
    "data.batch_size=8",
    "data.num_workers=0",
    "moco.queue_size=64",
    "moco.cycle_queue_size=16",
    "moco.pixels_per_image=2",
    "schedule.warmup_steps=1",
]
QUICK_PROBE = ["schedule.epochs=1", "eval.world_train_images=8", "eval.world_val_images=4"]
QUICK_PROPAGATE = ["propagate.frames=3", "propagate.size=64"]
PROPAGATIONS = ("davis", "world")  # real video, then the world's own held-out clips
WORLD_DAVIS = "world-davis"  # OUT/world-davis: the held-out clips, written once per folder


def slug(method: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in method.lower()).strip("-")


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


class Stopped(Exception):
    """SIGINT or SIGTERM reached the benchmark; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum: int, frame) -> None:
    raise Stopped(signum)


class Benchmark:
    """Runs every (method, seed) task, each pretrain then its probes, ``jobs`` at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.ledger or args.out)  # results and table
        self.work = Path(args.work) if args.ledger else self.out  # pretrain runs, world clips
        self.results_path = self.out / "results.jsonl"
        self.provenance = ledgers.provenance(ROOT)  # commit, CPU: the same for every record
        self.pretrain_seconds: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()
        self.world_lock = threading.Lock()
        self.processes_lock = threading.Lock()  # guards live and stopping
        self.live: list[subprocess.Popen] = []  # every cacl process started, to stop them
        self.stopping = False
        self.done = {_key(r) for r in self.records()}
        self.eval_steps = [args.steps * (i + 1) // args.evals for i in range(args.evals)]
        # Two invocations side by side each think the machine is theirs; OMP_NUM_THREADS set by
        # the caller wins, as oversubscribed threads spin and slow every run several times over.
        self.threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, usable_cores() // args.jobs))

    def method_preset(self, method: str) -> str:
        """The recipe with the method's preset layered on it (``tiny-world+moco-v2``)."""
        layer = METHODS[method]
        return f"{self.args.preset}+{layer}" if layer else self.args.preset

    def method_config(self, method: str):
        from cacl_cli.api import resolve

        return resolve(self.method_preset(method), self.args.set)

    def records(self) -> list[dict]:
        return ledgers.read_records(self.results_path)

    def write(self, record: dict) -> None:
        """Append one finished cell, with where and how it was measured."""
        with self.lock:
            ledgers.append_record(self.results_path, {**record, **self.provenance})
            self.done.add(_key(record))

    def precision(self, sets_: list[str], preset: str) -> str:
        """The arithmetic a cell's command resolves to, for its record."""
        from cacl_cli.api import resolve

        return ledgers.precision(resolve(preset, sets_), self.args.device)

    def timing(self, method: str, seed: int) -> dict:
        """The pretrain's wall time, where this invocation trained it from start to end."""
        seconds = self.pretrain_seconds.get((method, seed))
        return {} if seconds is None else {"pretrain_seconds": seconds}

    def start_cacl(self, *args: str, log: Path) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": self.threads, "COLUMNS": "200"}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with self.processes_lock, open(log, "a") as fh:
            if self.stopping:  # a task that was running when the stop came starts nothing new
                raise Stopped(signal.SIGTERM)
            process = subprocess.Popen(
                [sys.executable, "-m", "cacl_cli", *args], stdout=fh, stderr=fh, env=env
            )
            self.live.append(process)
        return process

    def cacl(self, *args: str, log: Path) -> None:
        if self.start_cacl(*args, log=log).wait() != 0:
            raise RuntimeError(f"cacl {args[0]} failed; see {log}")

    def results_of(self, *args: str, out: Path, folder: Path) -> tuple[dict, float]:
        """Run one evaluating cacl command into ``out``: its results.json and the seconds taken."""
        tick = time.perf_counter()
        log = folder / "log.txt"
        out_args = ["--out", str(out), "--overwrite"]  # a rerun redoes an evaluation cut short
        self.cacl(*args, *out_args, "--device", self.args.device, log=log)
        return json.loads((out / "results.json").read_text()), round(time.perf_counter() - tick, 1)

    def probe(self, method: str, seed: int, step: int, source: list[str], folder: Path) -> None:
        if (method, seed, step, "probe") in self.done:
            return
        out = folder / f"probe-{step:07d}"
        world = [s for s in self.args.set if s.startswith("world.")]
        probe_sets = sets(world + [f"run.seed={seed}"] + self.args.probe_set)
        result, seconds = self.results_of(
            "probe",
            *source,
            "--preset",
            self.args.probe_preset,
            *probe_sets,
            out=out,
            folder=folder,
        )
        self.write(
            {
                "method": method,
                "seed": seed,
                "step": step,
                "kind": "probe",
                "miou": result["miou"],
                "macc": result.get("macc"),
                "probe_seconds": seconds,
                "precision": self.precision(self.args.set, self.method_preset(method)),
                **self.timing(method, seed),
                "truth": _truth_at(RunFolder(folder / "run").metrics, step),
            }
        )

    def propagate(
        self, kind: str, method: str, seed: int, step: int, source: list[str], folder: Path
    ) -> None:
        """J&F of label propagation at the last step: ``davis`` on the real sequences, ``world``
        on the world's held-out clips (at --world-size); skipped when not asked for or done."""
        wanted = self.args.davis if kind == "davis" else self.args.world_clips
        if not wanted or (method, seed, step, kind) in self.done:
            return
        root, size = (
            (self.args.davis, [])
            if kind == "davis"
            else (str(self.world_clips()), ["--size", str(self.args.world_size)])
        )
        result, seconds = self.results_of(
            "propagate",
            root,
            *source,
            "--preset",
            self.args.propagate_preset,
            *sets(self.args.propagate_set),
            *size,
            out=folder / f"{kind}-{step:07d}",
            folder=folder,
        )
        self.write(
            {
                "method": method,
                "seed": seed,
                "step": step,
                "kind": kind,
                f"{kind}_jf_x100": result["J&F_mean_x100"],
                f"{kind}_j_x100": result["J_mean_x100"],
                f"{kind}_f_x100": result["F_mean_x100"],
                "per_sequence_x100": {n: s["J&F_x100"] for n, s in result["sequences"].items()},
                f"{kind}_seconds": seconds,
                "precision": self.precision(self.args.propagate_set, self.args.propagate_preset),
            }
        )

    def world_clips(self) -> Path:
        """OUT/world-davis, drawn from the pretrain preset's world (and its --set world.* keys)
        on first use; a folder cut short is never used, because it appears only when whole."""
        clips = self.work / WORLD_DAVIS
        with self.world_lock:
            if not clips.is_dir():
                partial = self.work / f"{WORLD_DAVIS}.partial"
                world = [s for s in self.args.set if s.startswith("world.")]
                self.cacl(
                    "world",
                    str(partial),
                    "--clips",
                    "0",
                    "--train-images",
                    "0",
                    "--val-images",
                    "0",
                    "--davis-clips",
                    str(self.args.world_clips),
                    "--preset",
                    self.args.preset,
                    *sets(world),
                    "--overwrite",
                    log=self.work / "world-davis.log",
                )
                (partial / "davis").rename(clips)
                shutil.rmtree(partial)
        drawn = len((clips / "ImageSets" / "2017" / "val.txt").read_text().split())
        if drawn != self.args.world_clips:  # never mix scores over different clip sets
            raise RuntimeError(
                f"{clips} holds {drawn} clips, not --world-clips {self.args.world_clips}; "
                f"pass --world-clips {drawn} or use another --out"
            )
        return clips

    def task(self, method: str, seed: int, progress, bar) -> None:
        folder = self.work / "runs" / f"{slug(method)}-s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        if METHODS[method] is None:  # the same backbone as the pretrained methods, untrained
            model = self.method_config(method).model
            shape = [f"model.arch={model.arch}", f"model.width={model.width}", f"run.seed={seed}"]
            self.probe(method, seed, 0, ["--random-init", *sets(shape[:2])], folder)
            for kind in PROPAGATIONS:
                self.propagate(kind, method, seed, 0, ["--random-init", *sets(shape)], folder)
            progress.advance(bar, len(self.eval_steps))
            return
        started, fresh = time.perf_counter(), not RunFolder(folder / "run").checkpoints.is_dir()
        training = self.start_training(method, seed, folder)
        fresh = fresh and training is not None
        # Each checkpoint is probed as soon as it is written, while training goes on, so a run
        # cut short still leaves its early points in results.jsonl.
        for step in self.eval_steps:
            checkpoint = RunFolder(folder / "run").checkpoint(step)
            while (method, seed, step, "probe") not in self.done and not checkpoint.is_file():
                if training is None or training.poll() is not None:
                    raise RuntimeError(f"{method} seed {seed}: no {checkpoint}; see {folder}")
                time.sleep(1.0)
            if fresh and step == self.eval_steps[-1]:  # trained here from step 0 to the end
                self.pretrain_seconds[method, seed] = round(time.perf_counter() - started, 1)
            self.probe(method, seed, step, ["--checkpoint", str(checkpoint)], folder)
            progress.advance(bar)
        if training is not None and training.wait() != 0:
            raise RuntimeError(f"{method} seed {seed}: pretrain failed; see {folder}/log.txt")
        last = self.eval_steps[-1]
        checkpoint = RunFolder(folder / "run").checkpoint(last)
        for kind in PROPAGATIONS:
            self.propagate(kind, method, seed, last, ["--checkpoint", str(checkpoint)], folder)

    def start_training(self, method: str, seed: int, folder: Path) -> subprocess.Popen | None:
        """Start (or resume) the method's pretrain run unless every probe point is done."""
        if all((method, seed, s, "probe") in self.done for s in self.eval_steps):
            return None
        run = folder / "run"
        every = max(1, self.args.steps // self.args.evals)
        keep = f"run.keep_checkpoints={self.args.evals + 1}"
        pretrain_sets = [f"run.seed={seed}", f"schedule.steps={self.args.steps}"]
        pretrain_sets += [f"run.checkpoint_every={every}", keep] + self.args.set
        # The same command starts the run or continues it after an interruption.
        args = [
            "--preset",
            self.method_preset(method),
            *sets(pretrain_sets),
            "--out",
            str(run),
            "--resume",
        ]
        log = folder / "log.txt"
        return self.start_cacl("pretrain", *args, "--device", self.args.device, log=log)

    def run(self, console: Console) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.work.mkdir(parents=True, exist_ok=True)
        tasks = [(m, s) for s in self.args.seeds for m in self.args.methods]
        handlers = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with progress_bar(console, "learning benchmark") as progress:
                total = len(tasks) * len(self.eval_steps)
                bar = progress.add_task("", total=total, status="probes")
                with ThreadPoolExecutor(self.args.jobs) as pool:
                    futures = []
                    try:
                        for method, seed in tasks:  # one at a time: a stop mid-way cancels these
                            futures.append(pool.submit(self.task, method, seed, progress, bar))
                        for future in futures:
                            future.result()
                    except Stopped:
                        self.stop(futures)
                        raise
        finally:
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def stop(self, futures: list) -> None:
        """No task starts, each live cacl process is asked to end (a pretrain writes a checkpoint
        at its step first), and the running tasks are waited for: their failures are the stop's."""
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C waits for the first
            signal.signal(signum, signal.SIG_IGN)
        with self.processes_lock:
            self.stopping = True
            for process in self.live:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
        for future in futures:
            future.cancel()
        wait(futures)  # their errors are the stop's: what was cut short, the next invocation redoes


def _key(record: dict) -> tuple:
    return record["method"], record["seed"], record["step"], record.get("kind", "probe")


def _truth_at(metrics: Path, step: int) -> dict:
    """The run's ground-truth diagnostics logged at ``step`` (empty if none were)."""
    if not metrics.is_file():
        return {}
    for line in metrics.read_text().splitlines():
        record = json.loads(line) if line.strip().endswith("}") else {}
        if record.get("step") == step:
            return {k: v for k, v in record.items() if k.startswith("truth/")}
    return {}


def last_complete_step(records: list[dict], methods: list[str], seeds: list[int]) -> int:
    """The latest probe step that every pretrained method reached with every seed (0: none)."""
    trained = [m for m in methods if METHODS[m] is not None]
    probes = [r for r in records if r.get("kind", "probe") == "probe"]
    reached = {(r["method"], r["seed"], r["step"]) for r in probes}
    steps = sorted({r["step"] for r in probes if r["step"] > 0}, reverse=True)
    complete = (s for s in steps if all((m, d, s) in reached for m in trained for d in seeds))
    return next(complete, 0)


def jf_x100(record: dict, kind: str) -> float:
    """A propagation record's J&F on the x100 scale; records written before the scorer stored
    ``*_x100`` fields hold the fraction under ``{kind}_jf``."""
    if f"{kind}_jf_x100" in record:
        return record[f"{kind}_jf_x100"]
    return 100 * record[f"{kind}_jf"]


def summarise(records: list[dict], methods: list[str], final: int) -> list[dict]:
    """Per method at the final step (random init: its only point): each yardstick's mean, spread
    and seeds, and the mean of each ground-truth diagnostic."""
    rows = []
    for method in methods:
        step = 0 if METHODS[method] is None else final
        # In seed order: parallel runs append their records in the order they finish.
        mine = sorted(
            (r for r in records if r["method"] == method and r["step"] == step),
            key=lambda r: r["seed"],
        )
        probes = [r for r in mine if r.get("kind", "probe") == "probe"]
        if not probes:
            continue
        davis = [(r["seed"], jf_x100(r, "davis")) for r in mine if r.get("kind") == "davis"]
        world = [(r["seed"], jf_x100(r, "world")) for r in mine if r.get("kind") == "world"]
        truth = {
            key: statistics.fmean(values)
            for key in DIAGNOSTICS
            if (values := [r["truth"][key] for r in probes if key in r.get("truth", {})])
        }
        rows.append(
            {
                "method": method,
                "probe": _stats([(r["seed"], 100 * r["miou"]) for r in probes]),
                "davis": _stats(davis),
                "world": _stats(world),
                "truth": truth,
            }
        )
    return rows


def _stats(measured: list[tuple[int, float]]) -> dict:
    """Mean, spread and values of (seed, value) pairs given in seed order."""
    values = [v for _, v in measured]
    return {
        "seeds": [s for s, _ in measured],
        "mean": statistics.fmean(values) if values else float("nan"),
        "std": statistics.stdev(values) if len(values) > 1 else float("nan"),
        "values": values,
    }


def recipe(cfg) -> list[str]:
    """What a method's resolved config trains: heads (and what the dense ones read, where not
    the last stage itself), pixel shuffle, positive rule, cycle return, queue sizes (global /
    pixel / cycle)."""
    heads = cfg.heads.on()
    letters = " ".join(h[0].upper() for h in heads)
    dense = " ".join(h[0].upper() for h in heads if h != "global")
    stage, neck = cfg.model.dense_stage, cfg.model.dense_neck
    if dense and (stage != "layer4" or neck):
        letters += f" ({dense} on {stage}{f' + {neck}-block neck' if neck else ''})"
    positive = cfg.loss.pixel_positive if "pixel" in heads else "-"
    cycle = cfg.loss.cycle_return if "cycle" in heads else "-"
    queues = " / ".join(str(HEADS[h].queue_size_in(cfg)) if h in heads else "-" for h in HEADS)
    return [letters, cfg.model.pixel_shuffle, positive, cycle, queues]


def paired_markdown(rows: list[dict], planned: int) -> str:
    """CACL minus MoCo-v2, seed by seed, per yardstick: the differences, their mean, sd and 95%
    t-interval, the seeds CACL is ahead, and the verdict (a partial one below ``planned`` pairs)."""
    by_method = {r["method"]: r for r in rows}
    if not {"CACL", "MoCo-v2"} <= by_method.keys():
        return ""
    lines = [
        "| yardstick | pairs | CACL - MoCo-v2 per seed (x100) | mean | sd | 95% t-interval |"
        " seeds CACL ahead | verdict |",
        "|" + " --- |" * 8,
    ]
    for yardstick, label in YARDSTICKS.items():
        a, b = (
            dict(zip(by_method[m][yardstick]["seeds"], by_method[m][yardstick]["values"]))
            for m in ("CACL", "MoCo-v2")
        )
        pair = ledgers.paired(a, b)
        if not pair["n"]:
            continue
        each = ", ".join(f"{s}: {d:+.2f}" for s, d in zip(pair["seeds"], pair["diffs"]))
        partial = f" (partial: {pair['n']} of {planned} pairs)" if pair["n"] < planned else ""
        spread = pair["n"] > 1  # one pair has no sd and no interval
        interval = f"[{pair['low']:+.2f}, {pair['high']:+.2f}]" if spread else "-"
        sd = f"{pair['sd']:.2f}" if spread else "-"
        lines.append(
            f"| {label} | {pair['n']} | {each} | {pair['mean']:+.2f} | {sd} | "
            f"{interval} | {pair['ahead']} of {pair['n']} | {pair['verdict']}{partial} |"
        )
    return "\n".join(lines) + "\n"


def _mean_std(stats: dict) -> str:
    """``mean ± std``; ``-`` for a yardstick not measured, no spread for a single seed."""
    if not stats["values"]:
        return "-"
    if len(stats["values"]) == 1:
        return f"{stats['mean']:.2f}"
    return f"{stats['mean']:.2f} ± {stats['std']:.2f}"


def _cell(stats: dict) -> str:
    if not stats["values"]:
        return "-"
    seeds = ", ".join(f"{v:.2f}" for v in stats["values"])
    return f"**{_mean_std(stats)}** ({seeds})"


def _versus(row: dict, base: dict | None, yardstick: str) -> str:
    """Gap to the baseline and whether it exceeds twice the larger seed spread."""
    if base is None or row is base or not row[yardstick]["values"]:
        return ""
    mine, theirs = row[yardstick], base[yardstick]
    gap = mine["mean"] - theirs["mean"]
    bound = 2 * max(mine["std"], theirs["std"])
    if math.isnan(bound):  # a single seed has no spread to compare the gap with
        return f"{gap:+.2f} (one seed: no spread)"
    return f"{gap:+.2f} ({'>' if gap > bound else '<='} {bound:.2f})"


def table_markdown(rows: list[dict], recipes: dict[str, list[str]], header: str) -> str:
    base = next((r for r in rows if r["method"] == "MoCo-v2"), None)
    columns = ["method", "heads", "pixel shuffle", "positive", "cycle return", "queues G / P / C"]
    columns += ["probe mIoU", "vs MoCo-v2", "DAVIS J&F x100", "vs MoCo-v2"]
    columns += ["world propagation J&F x100", "vs MoCo-v2", *DIAGNOSTICS.values()]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        cells = [r["method"], *recipes[r["method"]]]
        cells += [_cell(r["probe"]), _versus(r, base, "probe")]
        cells += [_cell(r["davis"]), _versus(r, base, "davis")]
        cells += [_cell(r["world"]), _versus(r, base, "world")]
        cells += [f"{r['truth'][k]:.2f}" if k in r["truth"] else "-" for k in DIAGNOSTICS]
        lines.append("| " + " | ".join(cells) + " |")
    notes = (
        "vs MoCo-v2: mean gap (twice the larger seed spread in brackets); '>' meets the target. "
        "Diagnostics at the last step, mean over seeds: P+ near = eq. 4 positives within one "
        "cell of the true point; jump near / on roll = the cycle's first jumps near the true "
        "point / on the roll offset (chance near 0.12, on roll 1/HW); position R2 = how much of "
        "a cell's place its backbone features explain."
    )
    return "\n".join(lines) + "\n\n" + notes + "\n"


def _pyplot():
    """matplotlib's pyplot drawing to files only, or None without the ``bench`` extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        from matplotlib import pyplot
    except ImportError:
        return None
    return pyplot


def plot(records: list[dict], methods: list[str], path: Path) -> bool:
    """Probe mIoU against pretraining steps, mean over seeds with a shaded ±std band.

    Drawn with matplotlib, the ``bench`` extra (``pip install 'cacl-video[bench]'``); without it
    the table is still written and this returns False.
    """
    pyplot = _pyplot()
    if pyplot is None:
        return False
    from matplotlib.ticker import MaxNLocator

    series = {}
    for method in methods:
        by_step: dict[int, list[float]] = {}
        for r in records:
            if r["method"] == method and r.get("kind", "probe") == "probe":
                by_step.setdefault(r["step"], []).append(100 * r["miou"])
        series[method] = sorted((s, statistics.fmean(v), _std(v)) for s, v in by_step.items())
    last_step = max((p[0] for line in series.values() for p in line), default=0)
    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=120, layout="constrained")
    for method, line in series.items():
        if not line:
            continue
        if METHODS[method] is None:  # random init: one value, drawn across the whole run
            line = [(0, line[0][1], line[0][2]), (max(last_step, 1), line[0][1], line[0][2])]
        steps, means, stds = (np.array(column) for column in zip(*line))
        drawn = axes.plot(steps, means, marker="o", markersize=4, label=method)[0]
        axes.fill_between(steps, means - stds, means + stds, color=drawn.get_color(), alpha=0.15)
    axes.set_xlabel("pretraining steps")
    axes.set_ylabel("probe mIoU (%)")
    axes.xaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10], integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 5, 10]))
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    figure.savefig(path)
    pyplot.close(figure)
    return True


YARDSTICKS = {"probe": "probe mIoU (%)", "davis": "DAVIS J&F x100", "world": "world J&F x100"}


def plot_yardsticks(rows: list[dict], path: Path) -> list[str]:
    """One panel per measured yardstick at the final step: each seed a dot, its method's mean a
    bar, and MoCo-v2's mean with twice its spread shaded, the band a lead has to clear.

    Returns the yardsticks drawn (none without matplotlib, the ``bench`` extra).
    """
    drawn = [y for y in YARDSTICKS if any(r[y]["values"] for r in rows)]
    pyplot = _pyplot()
    if pyplot is None or not drawn:
        return []
    base = next((r for r in rows if r["method"] == "MoCo-v2"), None)
    figure, panels = pyplot.subplots(
        1, len(drawn), figsize=(4 * len(drawn), 4.5), dpi=120, layout="constrained", squeeze=False
    )
    for axes, yardstick in zip(panels[0], drawn):
        if base is not None and base[yardstick]["values"]:
            mean, spread = base[yardstick]["mean"], 2 * _std(base[yardstick]["values"])
            axes.axhspan(mean - spread, mean + spread, color="grey", alpha=0.15)
            axes.axhline(mean, color="grey", linestyle="--", linewidth=1)
        for x, row in enumerate(rows):
            values = row[yardstick]["values"]
            if values:
                axes.bar(x, row[yardstick]["mean"], width=0.6, alpha=0.35)
                axes.plot([x] * len(values), values, "o", color="black", markersize=3)
        axes.set_xticks(range(len(rows)), [r["method"] for r in rows], rotation=35, ha="right")
        axes.set_ylabel(YARDSTICKS[yardstick])
        low = min(v for r in rows for v in r[yardstick]["values"])
        axes.set_ylim(bottom=max(0.0, low - 5))
        axes.grid(axis="y", alpha=0.3)
    figure.suptitle("grey: MoCo-v2's mean, shaded to twice its seed spread")
    figure.savefig(path)
    pyplot.close(figure)
    return drawn


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def describe_machine(device: str) -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    commit, _ = ledgers.source_state(ROOT)
    return (
        f"{date.today()}, commit {commit}, {platform.machine()}"
        f" with {usable_cores()} cores, {gpu}, device {device}, torch {torch.__version__}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny-world", help="pretrain preset for every method")
    parser.add_argument("--probe-preset", default="probe-world")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--evals", type=int, default=3, help="probe points along training")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="(method, seed) runs at once")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], help="pretrain override")
    parser.add_argument("--probe-set", action="append", default=[], help="probe override")
    parser.add_argument(
        "--davis",
        default=str(DEFAULT_DAVIS) if DEFAULT_DAVIS.is_dir() else "",
        help="DAVIS-format folder for the real-video yardstick ('' to skip)",
    )
    parser.add_argument("--propagate-preset", default="propagate-cpu", help="DAVIS protocol")
    parser.add_argument(
        "--propagate-set", action="append", default=[], help="cacl propagate override"
    )
    parser.add_argument(
        "--world-clips", type=int, default=20, help="held-out world clips to propagate (0: skip)"
    )
    parser.add_argument("--world-size", type=int, default=128, help="their short side, in px")
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "learning"))
    parser.add_argument(
        "--ledger",
        default="",
        help="a ledger folder: committed results that "
        "grow across sessions, one recipe, every cell float32 (bench/ledger.py)",
    )
    parser.add_argument(
        "--work",
        default="",
        help="with --ledger: where its pretrain runs go (default bench/out/ledgers/NAME)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, no result")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite table and plot")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.evals, args.seeds = 2, 1, args.seeds[:1]
        args.set = QUICK_PRETRAIN + args.set
        args.probe_set = QUICK_PROBE + args.probe_set
        args.propagate_set = QUICK_PROPAGATE + args.propagate_set
        args.world_clips, args.world_size = min(args.world_clips, 2), 64
        if args.davis == str(DEFAULT_DAVIS):
            args.davis = str(QUICK_DAVIS) if QUICK_DAVIS.is_dir() else ""
    if args.ledger:  # the same arithmetic on every machine
        args.set = ledgers.FP32_PINS + args.set
        args.propagate_set = ledgers.FP32_PINS + args.propagate_set
        args.work = args.work or str(ROOT / "bench" / "out" / "ledgers" / Path(args.ledger).name)
    return args


def ledger_recipe(bench: Benchmark) -> dict:
    """The resolved settings every cell of the ledger is measured with: each method's pretrain,
    the probe, the propagation, and the bench's own sizes and DAVIS sequences."""
    from cacl_cli.api import resolve

    args = bench.args
    world = [s for s in args.set if s.startswith("world.")]
    davis = Path(args.davis) / "JPEGImages" / "480p"
    recipe = {
        f"pretrain/{m}": ledgers.settings(bench.method_config(m))
        for m in args.methods
        if METHODS[m] is not None
    }
    recipe["probe"] = ledgers.settings(resolve(args.probe_preset, world + args.probe_set))
    recipe["propagate"] = ledgers.settings(resolve(args.propagate_preset, args.propagate_set))
    recipe["bench"] = {
        "steps": args.steps,
        "evals": args.evals,
        "world_clips": args.world_clips,
        "world_size": args.world_size,
        "davis_sequences": sorted(p.name for p in davis.iterdir()) if args.davis else [],
    }
    data = {bench.method_config(m).data.path for m in args.methods if METHODS[m] is not None}
    if data - {None}:  # pairs folders: what they hold, not where they lie
        recipe["bench"]["pairs"] = sorted(ledgers.pairs_digest(Path(p)) for p in data - {None})
    return recipe


def ledger_header(records: list[dict], args: argparse.Namespace) -> str:
    """How far the ledger has come, and where its cells were measured."""
    trained = [m for m in args.methods if METHODS[m] is not None]
    planned = len(trained) * len(args.seeds) * (1 + bool(args.davis) + bool(args.world_clips))
    wanted = {(m, s) for m in trained for s in args.seeds}
    done = [r for r in records if (r["method"], r["seed"]) in wanted]
    machines = sorted({ledgers.cpu_label(r) for r in done})
    commits = sorted({ledgers.commit_label(r) for r in done})
    ledger = Path(args.ledger)  # a ledger of several keeps its design in the folder above
    design = "design.md" if (ledger / "design.md").is_file() else "../README.md"
    return (
        f"# Ledger {ledger.name}: {len(done)} of {planned} cells\n\n"
        f"Commits: {', '.join(commits) or '-'}. Machines: {'; '.join(machines) or '-'}. "
        f"The design and the verdict rule: {design}.\n\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    bench = Benchmark(args)
    started = time.perf_counter()
    if args.ledger and not args.summary_only:
        try:
            ledgers.admit(bench.out, ledger_recipe(bench), bench.provenance, ROOT)
        except ledgers.Refused as refused:
            console.print(f"error: {refused}", markup=False, highlight=False, soft_wrap=True)
            return 2
    if not args.summary_only:
        try:
            bench.run(console)
        except Stopped as stop:
            console.print(
                f"stopped by {stop}: {len(bench.records())} records in {bench.results_path}; "
                "the pretrain runs in flight wrote a checkpoint; the same command goes on from "
                "there",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            return 128 + stop.signum
    records = bench.records()
    final = last_complete_step(records, args.methods, args.seeds)
    complete = "the last step every method reached with every seed"
    if not final:  # a run cut short: the latest step reached, with whatever seeds got there
        final = max((r["step"] for r in records), default=0)
        complete = "INCOMPLETE: not every method and seed reached it; see the seeds column"
    rows = summarise(records, args.methods, final)
    protocol = ", ".join([args.propagate_preset, *args.propagate_set])
    davis = (
        f"DAVIS J&F ({protocol}) on {args.davis}"
        if args.davis
        else ("no DAVIS folder: J&F not measured")
    )
    world = (
        f"world propagation J&F ({protocol}) on {args.world_clips} held-out clips at "
        f"{args.world_size} px"
    )
    header = (
        f"Probe mIoU (%) after {final} of {args.steps} pretraining steps ({complete}); "
        f"{davis}; {world if args.world_clips else 'world propagation not measured'}; "
        f"{describe_machine(args.device)}; "
        f"{time.perf_counter() - started:.0f} s this invocation.\n\n"
        f"Command: python bench/learning.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    recipes = {
        m: ["-"] * 5 if METHODS[m] is None else recipe(bench.method_config(m)) for m in args.methods
    }
    text = table_markdown(rows, recipes, header)
    if args.ledger:
        text = ledger_header(records, args) + paired_markdown(rows, len(args.seeds)) + "\n" + text
    (bench.out / "table.md").write_text(text)
    if not plot(records, args.methods, bench.out / "probe-vs-steps.png"):
        console.print("no plot: matplotlib is missing (pip install 'cacl-video[bench]')")
    plot_yardsticks(rows, bench.out / "yardsticks.png")
    table = Table(title="learning benchmark")
    for column in ("method", "probe mIoU", "DAVIS J&F x100", "world J&F x100", "seeds"):
        table.add_column(column)
    for r in rows:
        cells = [_mean_std(r[y]) for y in ("probe", "davis", "world")]
        table.add_row(r["method"], *cells, str(len(r["probe"]["values"])))
    console.print(table)
    console.print(f"raw: {bench.results_path}\ntable: {bench.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
