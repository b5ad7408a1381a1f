"""The learning benchmark: Table 1 of the paper on the built-in world.

Each method is pretrained with the same budget (steps, batch, schedule, seeds) and its backbone
judged by the linear probe on held-out labelled frames of the same world, at several points of
training. Random init is the floor every method must clear.

    python bench/learning.py                         # the full table: hours on a CPU
    python bench/learning.py --device cuda --jobs 5  # minutes on one GPU
    python bench/learning.py --quick                 # seconds: checks the plumbing only

Writes OUT/results.jsonl (one record per probe, appended as each finishes), OUT/table.md and
OUT/probe-vs-steps.png. Rerunning the same command resumes: finished probes are skipped and
unfinished pretrain runs continue from their checkpoints.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cacl_cli.progress import progress_bar  # noqa: E402

# name -> (pretrain overrides, heads G/P/C, pixel shuffle); None: no pretraining
METHODS: dict[str, tuple[list[str] | None, str, str]] = {
    "random init": (None, "", ""),
    "MoCo-v2": (["heads.pixel=false", "heads.cycle=false"], "G", "-"),
    "two heads": (["heads.cycle=false"], "G P", "yes"),
    "CACL": ([], "G P C", "yes"),
    "CACL, no pixel shuffle": (["model.pixel_shuffle=off"], "G P C", "no"),
}
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


def slug(method: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in method.lower()).strip("-")


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


class Benchmark:
    """Runs every (method, seed) task, each pretrain then its probes, ``jobs`` at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out)
        self.results_path = self.out / "results.jsonl"
        self.lock = threading.Lock()
        self.done = {(r["method"], r["seed"], r["step"]) for r in self.records()}
        self.eval_steps = [args.steps * (i + 1) // args.evals for i in range(args.evals)]
        self.threads = str(max(1, (os.cpu_count() or 1) // args.jobs))

    def pretrain_config(self):
        from cacl_cli.config import resolve

        return resolve(self.args.preset, self.args.set)

    def records(self) -> list[dict]:
        if not self.results_path.is_file():
            return []
        lines = self.results_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip().endswith("}")]

    def start_cacl(self, *args: str, log: Path) -> subprocess.Popen:
        env = {**os.environ, "OMP_NUM_THREADS": self.threads, "COLUMNS": "200"}
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with open(log, "a") as fh:
            return subprocess.Popen(
                [sys.executable, "-m", "cacl_cli", *args], stdout=fh, stderr=fh, env=env
            )

    def cacl(self, *args: str, log: Path) -> None:
        if self.start_cacl(*args, log=log).wait() != 0:
            raise RuntimeError(f"cacl {args[0]} failed; see {log}")

    def probe(self, method: str, seed: int, step: int, source: list[str], folder: Path) -> None:
        if (method, seed, step) in self.done:
            return
        out = folder / f"probe-{step:07d}"
        world = [s for s in self.args.set if s.startswith("world.")]
        probe_sets = sets(world + [f"run.seed={seed}"] + self.args.probe_set)
        tick = time.perf_counter()
        self.cacl(
            "probe", *source, "--preset", self.args.probe_preset, *probe_sets,
            "--out", str(out), "--device", self.args.device, log=folder / "log.txt",
        )  # fmt: skip
        result = json.loads((out / "results.json").read_text())
        record = {
            "method": method,
            "seed": seed,
            "step": step,
            "miou": result["miou"],
            "macc": result.get("macc"),
            "probe_seconds": round(time.perf_counter() - tick, 1),
        }
        with self.lock:
            with open(self.results_path, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            self.done.add((method, seed, step))

    def task(self, method: str, seed: int, progress, bar) -> None:
        overrides = METHODS[method][0]
        folder = self.out / "runs" / f"{slug(method)}-s{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        if overrides is None:  # the same backbone as the pretrained methods, untrained
            model = self.pretrain_config().model
            shape = ["--set", f"model.arch={model.arch}", "--set", f"model.width={model.width}"]
            self.probe(method, seed, 0, ["--random-init", *shape], folder)
            progress.advance(bar, len(self.eval_steps))
            return
        training = None
        if not all((method, seed, s) in self.done for s in self.eval_steps):
            run = folder / "run"
            every = max(1, self.args.steps // self.args.evals)
            keep = f"run.keep_checkpoints={self.args.evals + 1}"
            pretrain_sets = overrides + [f"run.seed={seed}", f"schedule.steps={self.args.steps}"]
            pretrain_sets += [f"run.checkpoint_every={every}", keep] + self.args.set
            if (run / "checkpoints").is_dir():
                args = ["--out", str(run), "--resume"]
            else:
                args = ["--preset", self.args.preset, *sets(pretrain_sets), "--out", str(run)]
            log = folder / "log.txt"
            training = self.start_cacl("pretrain", *args, "--device", self.args.device, log=log)
        # Each checkpoint is probed as soon as it is written, while training goes on, so a run
        # cut short still leaves its early points in results.jsonl.
        for step in self.eval_steps:
            checkpoint = folder / "run" / "checkpoints" / f"step-{step:07d}.pt"
            while (method, seed, step) not in self.done and not checkpoint.is_file():
                if training is None or training.poll() is not None:
                    raise RuntimeError(f"{method} seed {seed}: no {checkpoint}; see {folder}")
                time.sleep(1.0)
            self.probe(method, seed, step, ["--checkpoint", str(checkpoint)], folder)
            progress.advance(bar)
        if training is not None and training.wait() != 0:
            raise RuntimeError(f"{method} seed {seed}: pretrain failed; see {folder}/log.txt")

    def run(self, console: Console) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        tasks = [(m, s) for s in self.args.seeds for m in self.args.methods]
        with progress_bar(console, "learning benchmark") as progress:
            bar = progress.add_task("", total=len(tasks) * len(self.eval_steps), status="probes")
            with ThreadPoolExecutor(self.args.jobs) as pool:
                futures = [pool.submit(self.task, m, s, progress, bar) for m, s in tasks]
                for future in futures:
                    future.result()


def last_complete_step(records: list[dict], methods: list[str], seeds: list[int]) -> int:
    """The latest probe step that every pretrained method reached with every seed (0: none)."""
    trained = [m for m in methods if METHODS[m][0] is not None]
    reached = {(r["method"], r["seed"], r["step"]) for r in records}
    steps = sorted({r["step"] for r in records if r["step"] > 0}, reverse=True)
    complete = (s for s in steps if all((m, d, s) in reached for m in trained for d in seeds))
    return next(complete, 0)


def summarise(records: list[dict], methods: list[str], final: int) -> list[dict]:
    """Per method at the final step (random init: its only point): mean, spread, n."""
    rows = []
    for method in methods:
        step = 0 if METHODS[method][0] is None else final
        scores = [100 * r["miou"] for r in records if r["method"] == method and r["step"] == step]
        if not scores:
            continue
        spread = statistics.stdev(scores) if len(scores) > 1 else float("nan")
        rows.append({"method": method, "mean": statistics.fmean(scores), "std": spread,
                     "n": len(scores), "scores": scores})  # fmt: skip
    return rows


def table_markdown(rows: list[dict], header: str) -> str:
    floor = next((r for r in rows if r["method"] == "random init"), None)
    lines = [header, "", "| method | heads | pixel shuffle | probe mIoU (mean ± std) | seeds |"]
    lines += ["| --- | --- | --- | --- | --- |"] if not floor else []
    if floor:
        lines[-1] = lines[-1] + " vs random init |"
        lines.append("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        _, heads, shuffle = METHODS[r["method"]]
        cells = [r["method"], heads or "-", shuffle or "-", f"{r['mean']:.2f} ± {r['std']:.2f}"]
        cells.append(", ".join(f"{s:.2f}" for s in r["scores"]))
        if floor:
            gap = r["mean"] - floor["mean"]
            bound = 2 * max(r["std"], floor["std"])
            verdict = "" if r is floor else f"{gap:+.2f} ({'>' if gap > bound else '<='} 2x spread)"
            cells.append(verdict)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], methods: list[str], path: Path) -> None:
    """Probe mIoU against pretraining steps, mean over seeds with a ±std band, drawn with OpenCV."""
    width, height, margin = 900, 560, 70
    image = np.full((height, width, 3), 255, np.uint8)
    colours = [(80, 80, 80), (200, 120, 30), (40, 160, 40), (30, 30, 220), (180, 60, 180)]
    series = {}
    for method in methods:
        by_step: dict[int, list[float]] = {}
        for r in records:
            if r["method"] == method:
                by_step.setdefault(r["step"], []).append(100 * r["miou"])
        series[method] = sorted((s, statistics.fmean(v), _std(v)) for s, v in by_step.items())
    points = [p for s in series.values() for p in s]
    if not points:
        return
    max_step = max(max(p[0] for p in points), 1)
    low = min(p[1] - p[2] for p in points) - 1
    high = max(p[1] + p[2] for p in points) + 1

    def xy(step: float, value: float) -> tuple[int, int]:
        x = margin + (width - 2 * margin) * step / max_step
        y = height - margin - (height - 2 * margin) * (value - low) / (high - low)
        return int(x), int(y)

    cv2.rectangle(image, xy(0, low), xy(max_step, high), (0, 0, 0), 1)
    for i in range(6):
        value = low + (high - low) * i / 5
        cv2.putText(image, f"{value:.1f}", (8, xy(0, value)[1] + 4), 0, 0.45, (0, 0, 0), 1)
        step = max_step * i / 5
        cv2.putText(image, f"{step:.0f}", (xy(step, low)[0] - 15, height - margin + 20), 0, 0.45,
                    (0, 0, 0), 1)  # fmt: skip
    cv2.putText(image, "pretraining steps", (width // 2 - 70, height - 20), 0, 0.55, (0, 0, 0), 1)
    cv2.putText(image, "probe mIoU (%)", (8, margin - 30), 0, 0.55, (0, 0, 0), 1)
    for (method, line), colour in zip(series.items(), colours):
        if METHODS[method][0] is None and line:  # random init: a flat line across the plot
            line = [(0, line[0][1], line[0][2]), (max_step, line[0][1], line[0][2])]
        for (s0, m0, d0), (s1, m1, d1) in zip(line, line[1:]):
            cv2.line(image, xy(s0, m0), xy(s1, m1), colour, 2, cv2.LINE_AA)
            cv2.line(image, xy(s0, m0 + d0), xy(s1, m1 + d1), colour, 1, cv2.LINE_AA)
            cv2.line(image, xy(s0, m0 - d0), xy(s1, m1 - d1), colour, 1, cv2.LINE_AA)
        for s, m, _ in line:
            cv2.circle(image, xy(s, m), 4, colour, -1, cv2.LINE_AA)
    for i, (method, colour) in enumerate(zip(series, colours)):
        y = margin + 10 + 22 * i
        cv2.line(image, (margin + 15, y), (margin + 45, y), colour, 3)
        cv2.putText(image, method, (margin + 55, y + 5), 0, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(path), image)


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def describe_machine(device: str) -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()  # fmt: skip
    return (
        f"{date.today()}, commit {commit or 'unknown'}, {platform.machine()}"
        f" with {os.cpu_count()} cores, {gpu}, device {device}, torch {torch.__version__}"
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
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "learning"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, no result")
    parser.add_argument("--summary-only", action="store_true", help="only rewrite table and plot")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.evals, args.seeds = 2, 1, args.seeds[:1]
        args.set = QUICK_PRETRAIN + args.set
        args.probe_set = QUICK_PROBE + args.probe_set
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console()
    bench = Benchmark(args)
    started = time.perf_counter()
    if not args.summary_only:
        bench.run(console)
    records = bench.records()
    final = last_complete_step(records, args.methods, args.seeds)
    complete = "the last step every method reached with every seed"
    if not final:  # a run cut short: the latest step reached, with whatever seeds got there
        final = max((r["step"] for r in records), default=0)
        complete = "INCOMPLETE: not every method and seed reached it; see the seeds column"
    rows = summarise(records, args.methods, final)
    header = (
        f"Probe mIoU (%) after {final} of {args.steps} pretraining steps ({complete}); "
        f"{describe_machine(args.device)}; "
        f"{time.perf_counter() - started:.0f} s this invocation.\n\n"
        f"Command: python bench/learning.py {' '.join(sys.argv[1:] if argv is None else argv)}"
    )
    text = table_markdown(rows, header)
    (bench.out / "table.md").write_text(text)
    plot(records, args.methods, bench.out / "probe-vs-steps.png")
    table = Table(title="learning benchmark (probe mIoU %)")
    for column in ("method", "mean", "std", "seeds"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["method"], f"{r['mean']:.2f}", f"{r['std']:.2f}", str(r["n"]))
    console.print(table)
    console.print(f"raw: {bench.results_path}\ntable: {bench.out / 'table.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
