"""A ledger: a results table that grows across sessions and machines, one recipe per folder.

``bench/learning.py --ledger DIR`` keeps its committed results here: ``recipe.json`` (the
resolved settings every cell is measured with, and the commit of the first cell),
``results.jsonl`` (one finished cell a line, appended as it is measured) and ``checks.jsonl``
(which later commits were found to train bit for bit as the first). This module decides whether
a cell belongs (same recipe, same arithmetic) and draws the seed-paired comparison the field
uses: the mean difference of seed-matched runs with its 95% t-interval.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

RECIPE_FILE = "recipe.json"
CHECKS_FILE = "checks.jsonl"
# Every cell float32, whatever the machine: tiny-world's queue products are bf16 where the CPU
# has native bf16, and propagation's backbone follows run.amp.
FP32_PINS = ["run.amp=off", "loss.queue_matmul=float32"]
# Keys that say where, how often or which seed, not what a cell computes (a pairs folder's
# contents are in the recipe, by digest: its path differs from machine to machine).
BOOKKEEPING = (
    "preset.",
    "run.seed",
    "run.device",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.log_every",
    "eval.cache",
    "data.path",
)
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "avx512_vnni")


class Refused(Exception):
    """A cell that would not belong in the ledger; the message is the one line to print."""


# ---------------------------------------------------------------- where and how a cell was measured


def cpu_model_and_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, list[str]]:
    """The CPU's model name and which of the flags that decide the arithmetic's speed it has."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return platform.processor() or platform.machine(), []
    fields = dict(line.split(":", 1) for line in lines if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return fields.get("model name", platform.machine()), [f for f in CPU_FLAGS if f in flags]


def source_state(root: Path) -> tuple[str, bool]:
    """The commit checked out at ``root``, and whether the package or the bench differ from it."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
        return done.stdout.strip()

    changed = git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        "cacl_cli",
        "presets",
        "bench/learning.py",
        "bench/ledger.py",
    )
    return git("rev-parse", "--short=12", "HEAD") or "unknown", bool(changed)


def commit_label(record: dict) -> str:
    """A record's commit as tables print it: ``+changes`` where the sources differed from it."""
    return record.get("commit", "?") + ("+changes" if record.get("dirty") else "")


def cpu_label(record: dict) -> str:
    """A record's CPU with the flags that decide its speed, as tables print it."""
    return f"{record.get('cpu', '?')} ({', '.join(record.get('cpu_flags', [])) or 'no flags'})"


def provenance(root: Path) -> dict:
    import torch

    from cacl_cli.api import usable_cores

    commit, dirty = source_state(root)
    model, flags = cpu_model_and_flags()
    return {
        "commit": commit,
        "dirty": dirty,
        "measured": str(date.today()),
        "cpu": model,
        "cpu_flags": flags,
        "cores": usable_cores(),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }


def precision(cfg, device: str) -> str:
    """What a command with this config computes in: ``float32``, or the settings that are not."""
    if cfg.run.amp == "off" and cfg.loss.queue_matmul == "float32":
        return "float32"
    return f"run.amp={cfg.run.amp}, loss.queue_matmul={cfg.loss.queue_matmul} on {device}"


# ---------------------------------------------------------------- the results file


def read_records(path: Path) -> list[dict]:
    """Every whole record; a line cut short by a kill is no record."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def append_record(path: Path, record: dict) -> None:
    """One line, flushed to disk before the call returns; a line left unfinished by a kill is
    closed first, so the new record never joins it."""
    with open(path, "ab") as fh:
        if fh.tell() and _last_byte(path) != b"\n":
            fh.write(b"\n")
        fh.write((json.dumps(record) + "\n").encode())
        fh.flush()
        os.fsync(fh.fileno())


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


# ---------------------------------------------------------------- the recipe


def flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    found = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            found |= flat(value, f"{prefix}{key}.")
        else:
            found[f"{prefix}{key}"] = value
    return found


def settings(cfg) -> dict[str, Any]:
    """A resolved config's keys that decide results."""
    return {k: v for k, v in flat(cfg.plain()).items() if not k.startswith(BOOKKEEPING)}


def pairs_digest(folder: Path) -> str:
    """What a pairs folder trains on, whatever machine extracted it: each clip's id, source and
    frame indices, from its manifest (not the decoder's name, which varies with what is
    installed)."""
    import hashlib

    lines = (folder / "manifest.jsonl").read_text().splitlines()[1:]
    clips = [[r["clip"], r["source"], r["indices"]] for r in map(json.loads, lines)]
    return hashlib.sha256(json.dumps(clips).encode()).hexdigest()[:16]


def differences(saved: dict, current: dict) -> list[str]:
    """Keys whose values differ, in parts both recipes hold. A key only one side has (added
    later with a default, or retired) is not a difference: same_training.py catches a default
    that changes the arithmetic."""
    found = []
    for part in saved.keys() & current.keys():
        old, new = saved[part], current[part]
        found += [
            f"{part} {key}: {old[key]!r} -> {new[key]!r}"
            for key in sorted(old.keys() & new.keys())
            if old[key] != new[key]
        ]
    return sorted(found)


def admit(folder: Path, recipe: dict, state: dict, root: Path) -> None:
    """Open the ledger for new cells measured by ``recipe`` at ``state`` (provenance); raises
    Refused where they would not pair with the cells it holds."""
    path = folder / RECIPE_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(path, {"first_commit": state["commit"], "recipe": recipe})
        return
    saved = json.loads(path.read_text())
    changed = differences(saved["recipe"], recipe)
    if changed:
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise Refused(
            f"{folder} holds cells of another recipe: {changed[0]}{more}; "
            "keep the recipe or start another --ledger folder"
        )
    if recipe.keys() - saved["recipe"].keys():  # a method joins: its settings join the recipe
        _write_json(path, {**saved, "recipe": {**recipe, **saved["recipe"]}})
    first = saved["first_commit"]
    if read_records(folder / "results.jsonl") and state["commit"] != first:
        same_training(folder, first, state["commit"], root)


def same_training(folder: Path, first: str, commit: str, root: Path) -> None:
    """Cells from a commit other than the first join only if it trains bit for bit as the
    first did (``bench/same_training.py``); a verdict is kept in checks.jsonl, once per commit."""
    checks = read_records(folder / CHECKS_FILE)
    if any(c["commit"] == commit and c["against"] == first and c["identical"] for c in checks):
        return
    print(f"ledger: cells so far come from {first}; checking that {commit} trains the same")
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "same_training.py"), "--against", first],
        capture_output=True,
        text=True,
    )
    verdict = (done.stdout.strip() or done.stderr.strip()[-500:]).replace("\n", "; ")
    append_record(
        folder / CHECKS_FILE,
        {
            "commit": commit,
            "against": first,
            "identical": done.returncode == 0,
            "verdict": verdict,
            "checked": str(date.today()),
        },
    )
    if done.returncode:
        raise Refused(
            f"{commit} does not train as {first}, which wrote this ledger's first cells "
            f"(bench/same_training.py: {verdict[:300]}); start another --ledger folder"
        )


def _write_json(path: Path, data: dict) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    partial.replace(path)


# ---------------------------------------------------------------- the seed-paired comparison


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (bisection on its CDF,
    integrated by Simpson's rule; exact to about 1e-6)."""
    log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

    def cdf_above_half(x: float, intervals: int = 2000) -> float:  # P(0 < T < x)
        h = x / intervals
        total = 0.0
        for i in range(intervals + 1):
            t = i * h
            weight = 1 if i in (0, intervals) else 4 if i % 2 else 2
            total += weight * math.exp(log_norm - (df + 1) / 2 * math.log1p(t * t / df))
        return total * h / 3

    low, high = 0.0, 20.0 if df > 1 else 13.0
    for _ in range(50):
        mid = (low + high) / 2
        low, high = (mid, high) if cdf_above_half(mid) < 0.475 else (low, mid)
    return (low + high) / 2


def paired(a: dict[int, float], b: dict[int, float]) -> dict:
    """a - b over the seeds both hold: each difference, their mean and sd, the 95% t-interval of
    the mean, how many seeds a is ahead, and the verdict (fixed in the ledger's design.md)."""
    seeds = sorted(a.keys() & b.keys())
    diffs = [a[s] - b[s] for s in seeds]
    result = {"seeds": seeds, "diffs": diffs, "n": len(diffs), "ahead": sum(d > 0 for d in diffs)}
    if len(diffs) < 2:
        return {
            **result,
            "mean": statistics.fmean(diffs) if diffs else math.nan,
            "sd": math.nan,
            "low": math.nan,
            "high": math.nan,
            "verdict": "too few pairs",
        }
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    half = t_quantile_975(len(diffs) - 1) * sd / math.sqrt(len(diffs))
    return {
        **result,
        "mean": mean,
        "sd": sd,
        "low": mean - half,
        "high": mean + half,
        "verdict": verdict(mean - half, mean + half),
    }


def verdict(low: float, high: float, a: str = "CACL", b: str = "MoCo-v2") -> str:
    if low > 0:
        return f"{a} ahead"
    if high < 0:
        return f"{b} ahead"
    return "not separated"
