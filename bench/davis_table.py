"""The real-video table: DAVIS J&F of label propagation for baselines and learned backbones.

Rows: the copy and colour baselines, a random-init backbone, and the last checkpoint of each
method and seed of a learning-benchmark folder (``bench/learning.py --out``), all under one
`cacl propagate` protocol (a preset). Each row's scores are appended to OUT/results.jsonl as it
finishes, so a rerun of the same command resumes; OUT/table.md has the per-sequence J&F and the
overall J, F and J&F (means over objects, as DAVIS reports them).

    python bench/davis_table.py --learning bench/out/learning --preset propagate-cpu
    python bench/davis_table.py --quick              # two frames of blackswan, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from rich.console import Console  # noqa: E402

from cacl_cli.api import RunFolder, progress_bar  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
import ledger  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"


def rows_to_run(args: argparse.Namespace) -> list[tuple[str, list[str]]]:
    """(row name, cacl propagate weight options) for every row of the table."""
    rows = [("copy", ["--baseline", "copy"]), ("colour", ["--baseline", "colour"])]
    shape = ["--set", f"model.width={args.width}", "--set", "run.seed=0"]
    rows.append(("random init", ["--random-init", *shape]))
    runs = sorted(Path(args.learning).glob("runs/*-s*/run")) if args.learning else []
    for run in runs:
        method_seed = run.parent.name
        seed = int(method_seed.rsplit("-s", 1)[1])
        if method_seed.startswith("random-init") or (args.seeds and seed not in args.seeds):
            continue
        checkpoints = RunFolder(run).checkpoint_files()
        if checkpoints:
            rows.append((method_seed, ["--checkpoint", str(checkpoints[-1])]))
    return rows


def run_row(name: str, weights: list[str], args: argparse.Namespace, out: Path) -> dict:
    folder = out / "rows" / name.replace(" ", "-")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    command = [
        sys.executable,
        "-m",
        "cacl_cli",
        "propagate",
        str(args.davis),
        *weights,
        "--preset",
        args.preset,
        *args.extra,
        "--out",
        str(folder),
        "--overwrite",
    ]
    tick = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: cacl propagate failed:\n{done.stderr[-2000:]}")
    result = json.loads((folder / "results.json").read_text())
    return {
        "row": name,
        "J&F_x100": result["J&F_mean_x100"],
        "J_x100": result["J_mean_x100"],
        "F_x100": result["F_mean_x100"],
        "sequences_x100": {n: s["J&F_x100"] for n, s in result["sequences"].items()},
        "frames": sum(s["frames_scored"] + 2 for s in result["sequences"].values()),
        "seconds": round(time.perf_counter() - tick, 1),
        "precision": result["weights"].get("precision", "-"),  # a baseline has no network
    }


def scaled_x100(record: dict) -> dict:
    """A record on the x100 scale; records written before the ``*_x100`` fields hold fractions."""
    if "J&F_x100" in record:
        return record
    scaled = {k: v for k, v in record.items() if k not in ("J&F", "J", "F", "sequences")}
    scaled |= {f"{k}_x100": 100 * record[k] for k in ("J&F", "J", "F")}
    return scaled | {"sequences_x100": {n: 100 * v for n, v in record["sequences"].items()}}


def table_markdown(records: list[dict], header: str) -> str:
    records = [scaled_x100(r) for r in records]
    names = sorted({n for r in records for n in r["sequences_x100"]})
    columns = ["row", "J&F", "J", "F", *names, "s"]
    lines = [header, "", "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in records:
        cells = [r["row"], *(f"{r[k + '_x100']:.1f}" for k in ("J&F", "J", "F"))]
        per_sequence = r["sequences_x100"]
        cells += [f"{per_sequence[n]:.1f}" if n in per_sequence else "-" for n in names]
        lines.append("| " + " | ".join(cells + [f"{r['seconds']:.0f}"]) + " |")
    methods: dict[str, list[float]] = {}
    for r in records:
        method = r["row"].rsplit("-s", 1)[0] if "-s" in r["row"] else r["row"]
        methods.setdefault(method, []).append(r["J&F_x100"])
    lines += ["", "| method | J&F x100 (mean ± std over seeds) | seeds |", "| --- | --- | --- |"]
    for method, values in methods.items():
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        mean = statistics.fmean(values)
        lines.append(f"| {method} | {mean:.2f} ± {spread:.2f} | {len(values)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--davis", type=Path, default=SHARED / "davis-2016")
    parser.add_argument("--learning", help="a bench/learning.py output folder (its checkpoints)")
    parser.add_argument("--seeds", type=int, nargs="*", help="learning-benchmark seeds (all)")
    parser.add_argument("--preset", default="propagate-cpu", help="the propagate protocol")
    parser.add_argument("--width", type=int, default=16, help="random init: first-stage channels")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "davis-table")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="for every row's propagate"
    )
    parser.add_argument("--quick", action="store_true", help="two frames of blackswan: plumbing")
    args = parser.parse_args(argv)
    args.extra = [option for pair in args.set for option in ("--set", pair)]
    if args.quick:
        args.davis = SHARED / "davis"
        args.extra += ["--set", "propagate.frames=3", "--set", "propagate.size=64"]
    if not args.davis.is_dir():
        print(f"no DAVIS folder at {args.davis}; give one with --davis", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "results.jsonl"
    records = [json.loads(line) for line in raw.read_text().splitlines()] if raw.is_file() else []
    done = {r["row"] for r in records}
    rows = rows_to_run(args)
    started = time.perf_counter()
    machine = ledger.provenance(ROOT)  # each row says which commit and CPU measured it
    measured = 0
    with progress_bar(Console(), "davis table") as progress:
        finished = len(done & {n for n, _ in rows})
        task = progress.add_task("", total=len(rows), completed=finished, status="")
        for name, weights in rows:
            if name in done:
                continue
            progress.update(task, status=name)
            record = run_row(name, weights, args, args.out) | machine
            measured += 1
            with open(raw, "a") as fh:
                fh.write(json.dumps(record) + "\n")
            records.append(record)
            progress.advance(task)
    table = args.out / "table.md"
    if measured or not table.is_file():  # a rerun that measured nothing keeps the table's story
        invocation = " ".join(sys.argv[1:] if argv is None else argv)
        header = (
            f"DAVIS J&F x100 of label propagation ({args.preset}) on {args.davis}; "
            f"{machine['measured']}, commit {ledger.commit_label(machine)}, "
            f"{ledger.cpu_label(machine)} with {machine['cores']} cores; "
            f"{measured} rows measured, {time.perf_counter() - started:.0f} s this invocation.\n\n"
            f"Command: python bench/davis_table.py {invocation}"
        )
        table.write_text(table_markdown(records, header))
    print(f"raw: {raw}\ntable: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
