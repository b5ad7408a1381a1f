"""Does pretraining on my own videos help? DAVIS J&F of backbones pretrained on real clips.

The user's path, measured: `cacl extract-pairs` on real clips, `cacl pretrain --preset video-cpu`
on the pairs, then DAVIS-2016 dev J&F (`propagate-cpu`, last layer, the official scorer) beside
random init, the copy and colour baselines. Two data variants, so learning can be told from
memorising the test frames:

- ``novel``: ``../shared/data/videos`` and ``frames/bedroom`` (no DAVIS frame seen); MoCo-v2 and
  CACL, seeds 0-2, paired by seed, and random init for the same seeds;
- ``davis-seen``: the same plus the frames of the ten DAVIS-2016 dev sequences (their frames
  only, never their masks); MoCo-v2 and CACL, seed 0.

Each variant is a ledger of its own (``bench/learning.py --ledger``, one recipe per folder), so
the runs spread over sessions: a rerun skips every cell already measured. The collections are
folders of links and the pairs are extracted into ``--work``; the ledgers, the baselines and
``summary.md`` go to ``--out``.

    python bench/real_video.py                          # both variants: hours on a CPU
    python bench/real_video.py --variants novel --seeds 0 --jobs 2
    python bench/real_video.py --variants novel --methods CACL --jobs 1   # one core's share
    python bench/real_video.py --summary-only           # redraw summary.md from the ledgers
    python bench/real_video.py --quick                  # seconds: the plumbing only
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import davis_table  # noqa: E402
import learning  # noqa: E402
import ledger as ledgers  # noqa: E402
from command import cacl  # noqa: E402

SHARED = ROOT.parent / "shared" / "data"
DAVIS = SHARED / "davis-2016"
NOVEL = [SHARED / "videos", SHARED / "frames" / "bedroom"]
VARIANTS = {  # name -> (what the collection holds, methods, seeds)
    "novel": (NOVEL, ["random init", "MoCo-v2", "CACL"], [0, 1, 2]),
    "davis-seen": (
        NOVEL + sorted((DAVIS / "JPEGImages" / "480p").glob("*")),
        ["MoCo-v2", "CACL"],
        [0],
    ),
}
QUICK_SOURCES = [SHARED / "videos" / "realshort.mp4", SHARED / "frames" / "bedroom"]
PRESET = "video-cpu"
LABELS = {"novel": "no DAVIS frame seen", "davis-seen": "DAVIS frames seen without labels"}
# The learning table's backbones, pretrained on the built-in world at the same width and scored
# with the same propagation: what a real-video backbone must beat to count (the design's rule).
WORLD_LEDGER = ROOT / "bench" / "experiments" / "2026-12-06-deciding"
WORLD_LABEL = "built-in world, 3000 steps"
WORLD_SEEDS = {0, 1, 2}


def collection(sources: list[Path], folder: Path) -> Path:
    """A folder of links to ``sources`` (video files, folders of videos, frame folders): real
    folders holding linked files, as extract-pairs does not descend into linked folders."""
    for source in sources:
        files = (
            [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        )
        for path in files:
            relative = (
                source.name if path == source else Path(source.name) / path.relative_to(source)
            )
            link = folder / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(path.resolve())
    return folder


def pairs(variant: str, sources: list[Path], work: Path, quick: bool) -> Path:
    """The variant's pairs folder, extracted with the recipe's own settings (a rerun resumes)."""
    videos = collection(sources, work / variant / "videos")
    out = work / variant / "pairs"
    extra = ["--set", "extract.pairs_per_clip=4", "--set", "extract.short_side=48"] if quick else []
    cacl(
        "extract-pairs",
        str(videos),
        "--out",
        str(out),
        "--preset",
        PRESET,
        "--workers",
        "1",
        *extra,
    )
    return out


def run_variant(variant: str, args: argparse.Namespace) -> int:
    """The variant's ledger: its pretrain cells (and random init's), each scored on DAVIS and by
    the world probe; cells already in the ledger are skipped."""
    sources, methods, seeds = VARIANTS[variant]
    if args.methods:  # a share of the variant's cells, for a second process on the other core
        methods = [m for m in methods if m in args.methods]
    if args.quick:
        sources = QUICK_SOURCES
    data = pairs(variant, sources, Path(args.work), args.quick)
    from cacl_cli.api import resolve

    steps = resolve(PRESET, []).schedule.steps
    command = [
        "--ledger",
        str(Path(args.out) / variant),
        "--work",
        str(Path(args.work) / variant),
        "--preset",
        PRESET,
        "--set",
        f"data.path={data}",
        "--world-clips",
        "0",
        "--methods",
        *methods,
        "--seeds",
        *map(str, args.seeds or seeds),
        "--steps",
        str(steps),
        "--evals",
        "1",
        "--jobs",
        str(args.jobs),
        "--device",
        args.device,
    ]
    if args.quick:
        command += ["--quick", "--seeds", "0"]
    if args.summary_only:
        command.append("--summary-only")
    return learning.main(command)


def baselines(args: argparse.Namespace) -> list[dict]:
    """The copy and colour baselines and a width-16 random init, scored once (a rerun reads
    them back): they depend on no pretraining."""
    out = Path(args.out) / "baselines"
    if not args.summary_only:
        quick = ["--quick"] if args.quick else []
        # float32, as every ledger cell (bench/learning.py): the random network's J&F moves by
        # about half a point between bf16 and float32 on this scorer
        davis_table.main(["--out", str(out), "--width", "16", "--set", "run.amp=off", *quick])
    return ledgers.read_records(out / "results.jsonl")


def summary(args: argparse.Namespace, rows: list[dict]) -> str:
    """One line per backbone: DAVIS J&F x100 per seed, their mean and spread; then CACL minus
    MoCo-v2 paired by seed, per variant."""
    lines = [
        "| backbone | data | DAVIS J&F x100 per seed | mean ± sd |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        values = row["values"]
        spread = f" ± {statistics.stdev(values.values()):.2f}" if len(values) > 1 else ""
        each = ", ".join(f"{s}: {v:.2f}" for s, v in sorted(values.items()))
        lines.append(
            f"| {row['name']} | {row['data']} | {each} | "
            f"{statistics.fmean(values.values()):.2f}{spread} |"
        )
    lines += [
        "",
        "| data | pairs | CACL - MoCo-v2 per seed | mean | 95% t-interval | verdict |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    by = {(r["name"], r["data"]): r["values"] for r in rows}
    for variant in args.variants:
        label = LABELS[variant]
        if ("CACL", label) in by and ("MoCo-v2", label) in by:
            pair = ledgers.paired(by["CACL", label], by["MoCo-v2", label])
            each = ", ".join(f"{s}: {d:+.2f}" for s, d in zip(pair["seeds"], pair["diffs"]))
            interval = f"[{pair['low']:+.2f}, {pair['high']:+.2f}]" if pair["n"] > 1 else "-"
            lines.append(
                f"| {label} | {pair['n']} | {each} | {pair['mean']:+.2f} | {interval} | "
                f"{pair['verdict']} |"
            )
    lines += targets(rows)
    return "\n".join(lines) + "\n"


def targets(rows: list[dict]) -> list[str]:
    """The design's rule for each method pretrained on the novel variant: the least that counts
    (mean above the world-pretrained CACL, and above random init by more than the seed spread,
    the larger sd of the two) and the moonshot (above the colour baseline)."""
    by = {(r["name"], r["data"]): r["values"] for r in rows}
    floor, world = by.get(("random init", "-")), by.get(("CACL", WORLD_LABEL))
    colour = by.get(("colour baseline", "-"), {}).get(0)
    if not floor or not world or colour is None:
        return []
    lines = [
        "",
        "| pretrained with no DAVIS frame seen | mean | - world CACL | - random init | seed spread "
        "| least that counts | above colour |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for method in ("MoCo-v2", "CACL"):
        values = by.get((method, LABELS["novel"]))
        if not values or len(values) < 2 or len(floor) < 2:
            continue
        mean = statistics.fmean(values.values())
        over_world = mean - statistics.fmean(world.values())
        over_floor = mean - statistics.fmean(floor.values())
        spread = max(statistics.stdev(values.values()), statistics.stdev(floor.values()))
        counts = over_world > 0 and over_floor > spread
        lines.append(
            f"| {method} ({len(values)} seeds) | {mean:.2f} | {over_world:+.2f} | "
            f"{over_floor:+.2f} | {spread:.2f} | {'met' if counts else 'not met'} | "
            f"{'yes' if mean > colour else 'no'} ({colour:.2f}) |"
        )
    return lines


def world_rows() -> list[dict]:
    """The claim ledger's world-pretrained backbones at seeds 0-2, on the same DAVIS scorer."""
    records = ledgers.read_records(WORLD_LEDGER / "results.jsonl")
    rows = []
    for method in ("MoCo-v2", "CACL"):
        values = {
            r["seed"]: learning.jf_x100(r, "davis")
            for r in records
            if r["method"] == method and r.get("kind") == "davis" and r["seed"] in WORLD_SEEDS
        }
        if values:
            rows.append({"name": method, "data": WORLD_LABEL, "values": values})
    return rows


def rows_of(args: argparse.Namespace, fixed: list[dict]) -> list[dict]:
    """Every backbone's DAVIS J&F by seed: the baselines, the world-pretrained backbones, then
    each variant's ledger."""
    rows = [
        {
            "name": f"{r['row']} (width 16, seed 0)"
            if r["row"] == "random init"
            else f"{r['row']} baseline",
            "data": "-",
            "values": {0: r["J&F_x100"]},
        }
        for r in fixed
    ]
    rows += world_rows()
    for variant in args.variants:
        records = ledgers.read_records(Path(args.out) / variant / "results.jsonl")
        for method in VARIANTS[variant][1]:
            values = {
                r["seed"]: learning.jf_x100(r, "davis")
                for r in records
                if r["method"] == method and r.get("kind") == "davis"
            }
            if values:
                data = "-" if method == "random init" else LABELS[variant]
                rows.append({"name": method, "data": data, "values": values})
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", help="instead of each variant's own")
    parser.add_argument(
        "--methods", nargs="+", choices=list(learning.METHODS), help="only these of each variant's"
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", default=str(ROOT / "bench" / "experiments" / "2026-12-06-real-video")
    )
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "real-video"))
    parser.add_argument("--summary-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: seconds, no result")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not DAVIS.is_dir() and not args.quick:
        print(f"no DAVIS-2016 folder at {DAVIS}: nothing to score on", file=sys.stderr)
        return 2
    for variant in args.variants:
        code = run_variant(variant, args)
        if code:
            return code
    fixed = baselines(args)
    text = summary(args, rows_of(args, fixed))
    (Path(args.out) / "summary.md").write_text(
        f"DAVIS-2016 dev J&F x100 (propagate-cpu, last layer, official scorer) of backbones "
        f"pretrained with `{PRESET}` on real clips.\n\nCommand: python bench/real_video.py "
        f"{' '.join(sys.argv[1:] if argv is None else argv)}\n\n{text}"
    )
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
