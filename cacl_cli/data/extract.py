"""Turning a video collection into training pairs: discovery, decoding, writing, the manifest.

Each clip is handled by one worker: it opens its own reader (decord, else OpenCV), picks
``pairs_per_clip`` starts from a generator seeded by the clip id, decodes only the frames it needs,
writes them as JPEGs (temp name, then rename) and finally a small record in ``.records/``. That
record marks the video done (or skipped, for a bad file), so a rerun skips it; an error of the
machine (disk full, I/O) writes no record, so a rerun retries the video. The manifest and the
report of skipped files are assembled from the records at the end, sorted by clip id: the same
input gives the same manifest, however often the run was interrupted.

Clip ids are readable (``class__clip``) and unique: a video whose readable id is taken (``a b.mp4``
beside ``a_b.mp4``, two non-Latin names, ``clip.mp4`` beside ``clip.webm``) gets a short hash of
its path appended, and a video keeps the id its record gave it on later runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import zlib
from dataclasses import asdict
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import cv2
import numpy as np

from cacl_cli.data.frames import decode, native_stderr_silenced
from cacl_cli.data.images import resize_short_side
from cacl_cli.data.layouts import VIDEO_SUFFIXES
from cacl_cli.config import ExtractSection
from cacl_cli.errors import CaclError, RunFailed
from cacl_cli.files import remove_stale_temps, write_atomic, write_text_atomic
from cacl_cli.progress import progress_bar

RECORDS = ".records"
MANIFEST = "manifest.jsonl"
REPORT = "skipped.tsv"
DEFAULT_EXTENSIONS = VIDEO_SUFFIXES


class ClipTimeout(Exception):
    pass


def find_videos(root: Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Every file under ``root`` (any depth) whose suffix is a video extension, sorted."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in extensions)


def clip_id(root: Path, path: Path) -> str:
    """A safe, unique file name from the path relative to the root: ``class/clip.mp4`` ->
    ``class__clip``. Only letters, digits, '-', '_' and '.' survive, so no id can name a folder
    above the output (no '/', no '..' component)."""
    relative = path.relative_to(root).with_suffix("")
    parts = [re.sub(r"[^A-Za-z0-9_.-]", "_", part).strip(".") or "_" for part in relative.parts]
    return "__".join(parts)


def choose_starts(count: int, settings: ExtractSection, cid: str) -> list[int]:
    """Seeded start frames for the clip's pairs (distinct where the clip allows)."""
    span = settings.stride * (settings.frames_per_clip - 1)
    choices = count - span
    rng = np.random.default_rng([settings.seed, zlib.crc32(cid.encode())])
    n = min(settings.pairs_per_clip, choices)
    return sorted(int(s) for s in rng.choice(choices, size=n, replace=False))


# ---------------------------------------------------------------- one clip


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise ClipTimeout()


def assign_ids(root: Path, videos: list[Path], known: dict[str, str]) -> dict[Path, str]:
    """A unique clip id per video: the id its record already has (``known``: source -> id), else
    the readable ``clip_id``, with a hash of the source appended where that id is taken."""
    taken, ids = set(known.values()), {}
    for path in videos:
        source = str(path.relative_to(root))
        cid = known.get(source)
        if cid is None:
            cid = clip_id(root, path)
            if cid in taken:
                cid += "-" + hashlib.sha1(source.encode()).hexdigest()[:8]
            taken.add(cid)
        ids[path] = cid
    return ids


def process_clip(root: Path, path: Path, cid: str, out: Path, settings: ExtractSection) -> dict:
    """Extract one clip; returns its record: done, skipped (a bad video, for good) or failed (an
    error of the machine, such as a full disk: no record is written, so a rerun retries it)."""
    record = {"clip": cid, "source": str(path.relative_to(root))}
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    try:
        with native_stderr_silenced():
            record.update(_extract(path, cid, out, settings))
    except ClipTimeout:
        record.update(status="skipped", reason=f"took longer than {settings.timeout:g} s")
    except (ValueError, cv2.error) as err:
        record.update(status="skipped", reason=str(err).splitlines()[0][:200])
    except OSError as err:
        where = err.filename or out / cid
        return record | {"status": "failed", "reason": f"{err.strerror or err} ({where})"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        write_text_atomic(out / RECORDS / f"{cid}.json", json.dumps(record) + "\n")
    except OSError as err:
        where = err.filename or out / RECORDS
        return record | {"status": "failed", "reason": f"{err.strerror or err} ({where})"}
    return record


def _refuse_links_outside(out: Path, target: Path) -> None:
    """Writing through a link that leads out of the output folder is refused."""
    if target.is_symlink() or not target.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"{target} leads outside {out}; remove that link")


def _extract(path: Path, cid: str, out: Path, settings: ExtractSection) -> dict:
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    need = settings.stride * (settings.frames_per_clip - 1) + 1

    def pick(count: int) -> list[int]:
        if count < need:
            raise ValueError(f"too short: {count} frames, {need} needed (stride {settings.stride})")
        starts = choose_starts(count, settings, cid)
        return [s + k * settings.stride for s in starts for k in range(settings.frames_per_clip)]

    count, fps, wanted, frames, decoder = decode(path, pick, settings.seek)
    _refuse_links_outside(out, out / cid)
    height, width = frames[0].shape[:2]
    names = []
    for index, frame in zip(wanted, frames):
        name = f"{cid}/{index:06d}.jpg"
        ok, data = cv2.imencode(
            ".jpg",
            cv2.cvtColor(resize_short_side(frame, settings.short_side), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, settings.quality],
        )
        if not ok:
            raise ValueError(f"frame {index} could not be encoded")
        write_atomic(out / name, lambda fh: fh.write(data.tobytes()))
        names.append(name)
    groups = [
        names[i : i + settings.frames_per_clip]
        for i in range(0, len(names), settings.frames_per_clip)
    ]
    indices = [
        wanted[i : i + settings.frames_per_clip]
        for i in range(0, len(wanted), settings.frames_per_clip)
    ]
    return {
        "status": "done",
        "frames": groups,
        "indices": indices,
        "fps": fps,
        "frame_count": count,
        "size": [width, height],
        "decoder": decoder,
        "stride": settings.stride,
    }


# ---------------------------------------------------------------- the whole folder


def extract_folder(video_dir: Path, out: Path, section, overwrite: bool, console) -> dict:
    """Every video under ``video_dir`` not yet done, in ``section.workers`` processes, then the
    manifest. Returns {done, skipped, failed: [records]}; failed clips are retried on a rerun."""
    if not video_dir.is_dir():
        raise CaclError(f"{video_dir} is not a folder of videos")
    suffixes = tuple(e if e.startswith(".") else f".{e}" for e in section.extensions)
    suffixes = suffixes or DEFAULT_EXTENSIONS
    videos = find_videos(video_dir, tuple(s.lower() for s in suffixes))
    if not videos:
        raise CaclError(f"{video_dir} holds no videos ({' '.join(suffixes)})")
    out.mkdir(parents=True, exist_ok=True)
    if (out / RECORDS).is_symlink():
        raise CaclError(f"{out / RECORDS} is a link; remove it, it must be a folder")
    remove_stale_temps(out, recursive=True)  # left by a killed run
    if overwrite:
        shutil.rmtree(out / RECORDS, ignore_errors=True)
    settings = section
    check_settings(out, settings)
    known = recorded_sources(out)
    ids = assign_ids(video_dir, videos, known)
    finished = set(known.values())
    todo = [v for v in videos if ids[v] not in finished]
    console.print(
        f"{len(videos)} videos, {len(videos) - len(todo)} already done, {len(todo)} to extract"
    )
    failed = []
    job = partial(_safe_process, video_dir, out, settings)
    todo = [(path, ids[path]) for path in todo]
    with progress_bar(console, "extract") as progress:
        task = progress.add_task("extract", total=len(todo), status="")
        context = get_context("forkserver")  # no fork of a parent that may hold codec threads
        with context.Pool(section.workers or os.cpu_count() or 1, initializer=worker_init) as pool:
            for record in pool.imap_unordered(job, todo):
                if record["status"] == "failed":
                    failed.append(record)
                speed = progress.tasks[0].speed
                progress.update(task, advance=1, status=f"{speed:.1f} clips/s" if speed else "")
    try:
        done, skipped = write_manifest(out, settings)
    except OSError as err:
        first = f" (first: {failed[0]['source']}: {failed[0]['reason']})" if failed else ""
        raise RunFailed(
            f"{out / MANIFEST}: could not write it ({err.strerror or err}); {len(failed)} of "
            f"{len(todo)} clips failed{first}; free space, then rerun the same command"
        ) from None
    return {"done": done, "skipped": skipped, "failed": failed}


def _safe_process(
    root: Path, out: Path, settings: ExtractSection, clip: tuple[Path, str]
) -> dict:
    """Run one clip; an unexpected error marks it failed (no record, so a rerun retries it)."""
    path, cid = clip
    try:
        return process_clip(root, path, cid, out, settings)
    except Exception as err:  # noqa: BLE001 - reported per clip, the run goes on
        return {"status": "failed", "source": str(path), "reason": repr(err)[:200]}


def recorded_sources(out: Path) -> dict[str, str]:
    """source -> clip id of every video an earlier run recorded."""
    found = {}
    for path in sorted((out / RECORDS).glob("*.json")) if (out / RECORDS).is_dir() else []:
        try:
            record = json.loads(path.read_text())
            found[record["source"]] = record["clip"]
        except (ValueError, KeyError, TypeError):
            path.unlink()  # a record from a damaged disk: the video is simply done again
    return found


# Settings that change what a pair is; a folder keeps one value of each (workers etc. may change).
PAIR_SETTINGS = ("stride", "frames_per_clip", "pairs_per_clip", "short_side", "quality", "seed")


def check_settings(out: Path, settings: ExtractSection) -> None:
    """Refuse to add pairs of other settings to a folder extracted before (its manifest says)."""
    manifest = out / MANIFEST
    if not manifest.is_file() or not done_clips(out):
        return
    try:
        before = json.loads(manifest.read_text().splitlines()[0])["settings"]
    except (ValueError, IndexError, KeyError, TypeError):
        raise CaclError(
            f"{manifest}: unreadable header; pass --overwrite to extract again"
        ) from None
    now = _settings_record(settings)
    for key in PAIR_SETTINGS:
        if key in before and before[key] != now[key]:
            raise CaclError(
                f"{out} was extracted with {key} {before[key]}, not {now[key]}; pass --overwrite "
                f"to redo it with {key} {now[key]}, or give another --out"
            )


def _settings_record(settings: ExtractSection) -> dict:
    """The ``extract`` section as the manifest's header records it."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def done_clips(out: Path) -> set[str]:
    """Clips whose record exists: finished (or skipped) by an earlier run."""
    folder = out / RECORDS
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def write_manifest(out: Path, settings: ExtractSection) -> tuple[int, int]:
    """Assemble manifest.jsonl and skipped.tsv from the records; returns (done, skipped)."""
    records = [json.loads(p.read_text()) for p in sorted((out / RECORDS).glob("*.json"))]
    done = [r for r in records if r["status"] == "done"]
    skipped = [r for r in records if r["status"] != "done"]
    header = {"cacl_pairs": 1, "settings": _settings_record(settings)}
    write_text_atomic(out / MANIFEST, "".join(json.dumps(r) + "\n" for r in [header] + done))
    write_text_atomic(
        out / REPORT,
        "source\treason\n" + "".join(f"{r['source']}\t{r['reason']}\n" for r in skipped),
    )
    return len(done), len(skipped)


def worker_init() -> None:
    """Workers ignore Ctrl-C (the parent handles it) and use one thread each."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"


def print_summary(out: Path, summary: dict, console) -> None:
    """The done / skipped / failed counts, where the reasons are, and each failed clip."""
    from rich.table import Table

    table = Table("done", "skipped", "failed", title=f"{out / MANIFEST}")
    table.add_row(str(summary["done"]), str(summary["skipped"]), str(len(summary["failed"])))
    console.print(table)
    if summary["skipped"]:
        console.print(f"skipped files and reasons: {out / REPORT}")
    for record in summary["failed"]:
        console.print(f"[red]failed[/] {record['source']}: {record['reason']} (retried on rerun)")
