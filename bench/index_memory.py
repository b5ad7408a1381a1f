"""The pairs index at Kinetics-400's size: load time and memory per rank and per loader worker.

Writes a synthetic manifest of ``--clips`` clips shaped like Kinetics-400's (readable ids, two
frames a clip), has ``cacl extract-pairs --merge`` write its ``index.bin`` and then merge one new
clip (each timed, the command's start included), then in fresh processes, side by side and
``--repeats`` times each: (a) the index as ``cacl pretrain`` opens it (``PairsFolder``), (b) the
manifest read as a list of dicts (the former working form). For each: the load time, the private
memory it added (USS: clean = file pages only this process maps, dirty = heap), after 20k random
draws, and what a forked loader worker copies (its private dirty growth) when it reads every
entry.
Usage: python bench/index_memory.py [--clips 240000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from command import cacl  # bench/ is this script's own folder

from cacl_cli.api import section

PROBE = """
import json, os, sys, time
from pathlib import Path
import numpy as np

def private():
    fields = dict(l.split(":") for l in open("/proc/self/smaps_rollup") if ":" in l)
    return [int(fields[k].split()[0]) for k in ("Private_Clean", "Private_Dirty")]

form, folder = sys.argv[1], Path(sys.argv[2])
if form == "index":
    from cacl_cli.api import PairsFolder
else:
    lines = None
before = private()
start = time.perf_counter()
if form == "index":
    source = PairsFolder(folder)
    count = len(source)
    def touch(d):
        for f in source.index.draw(d):
            source.index.location(f)
else:
    records = [json.loads(l) for l in open(folder / "manifest.jsonl")][1:]
    draws = [g for r in records for g in r["frames"]]
    count = len(draws)
    def touch(d):
        for name in draws[d]:
            len(name)
load_s = time.perf_counter() - start
loaded = private()
rng = np.random.default_rng(0)
for _ in range(20000):
    touch(int(rng.integers(count)))
used = private()
read, write = os.pipe()
if os.fork() == 0:
    start_dirty = private()[1]
    for d in range(count):
        touch(d)
    os.write(write, str(private()[1] - start_dirty).encode())
    os._exit(0)
os.wait()
print(json.dumps({"load_s": load_s, "load_kb": [a - b for a, b in zip(loaded, before)],
                  "after_draws_kb": [a - b for a, b in zip(used, before)],
                  "worker_dirty_kb": int(os.read(read, 100))}))
"""


def kinetics_like(n: int) -> list[dict]:
    records = []
    for i in range(n):
        clip = f"class{i % 400:03d}__{i:011d}_000010_000020"
        names = [f"{clip}/{f:06d}.jpg" for f in (17 + i % 50, 25 + i % 50)]
        records.append(
            {
                "clip": clip,
                "source": f"class{i % 400:03d}/{i:011d}_000010_000020.mp4",
                "status": "done",
                "frames": [names],
                "indices": [[17, 25]],
                "fps": 25.0,
                "frame_count": 250,
                "size": [340, 256],
                "decoder": "decord",
                "stride": 8,
            }
        )
    return records


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=240_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="index-memory-"))
    videos = folder.parent / f"{folder.name}-videos"  # --merge reads no video, but names a folder
    videos.mkdir()
    (videos / "unread.mp4").touch()
    records = kinetics_like(args.clips)
    header = {"cacl_pairs": 1, "settings": asdict(section("extract"))}
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in [header] + records))
    seconds = cacl("extract-pairs", videos, "--merge", "--out", folder)
    print(
        f"{args.clips} clips: manifest {manifest.stat().st_size / 1e6:.1f} MB, index "
        f"{(folder / 'index.bin').stat().st_size / 1e6:.1f} MB, written by "
        f"`cacl extract-pairs --merge` in {seconds:.1f} s (the command's start included)"
    )
    (folder / ".records").mkdir()
    new = kinetics_like(1)[0] | {"clip": "zzz__new", "source": "zzz/new.mp4"}
    (folder / ".records" / "zzz__new.json").write_text(json.dumps(new))
    seconds = cacl("extract-pairs", videos, "--merge", "--out", folder)
    print(f"merging one new clip into the manifest and index: {seconds:.1f} s (the command)")
    runs = {"index": [], "dicts": []}
    for _ in range(args.repeats):
        for form in runs:  # side by side, alternating
            done = subprocess.run(
                [sys.executable, "-c", PROBE, form, str(folder)],
                capture_output=True,
                text=True,
                check=True,
            )
            runs[form].append(json.loads(done.stdout))
    for form, results in runs.items():
        median = {
            key: statistics.median(r[key] if key[-1] == "s" else sum(r[key]) for r in results)
            for key in ("load_s",)
        }
        mb = {
            key: [round(statistics.median(r[key][i] for r in results) / 1024, 1) for i in (0, 1)]
            for key in ("load_kb", "after_draws_kb")
        }
        worker = statistics.median(r["worker_dirty_kb"] for r in results) / 1024
        print(
            f"{form:6s} load {median['load_s']:.3f} s | added MB [clean, dirty]: at load "
            f"{mb['load_kb']}, after 20k draws {mb['after_draws_kb']} | a worker reading "
            f"every entry copies {worker:.1f} MB"
        )


if __name__ == "__main__":
    main()
