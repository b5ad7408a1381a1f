"""Turning a video collection into training pairs: discovery, decoding, writing, the manifest.

A video is a video file or a frame folder (a folder holding image files: DAVIS' and YouTube-VOS'
``JPEGImages/480p/<sequence>/``, or frames decoded once with ffmpeg); both take the same path
through everything below, and a collection may hold both.

Each clip is handled by one worker: it opens its own reader (decord, else OpenCV), picks
``pairs_per_clip`` starts from a generator seeded by the clip id, decodes only the frames it needs,
encodes them as JPEGs and writes them: as files (temp name, then rename) by the worker, or into a
tar shard by the parent (``tar_shards.py``). Then a small record in ``.records/`` marks the video
done (or skipped, for a bad file), so a rerun skips it; an error of the machine (disk full, I/O)
writes no record, so a rerun retries the video. At the end the records are merged into the
manifest (``manifest.py``), sorted by clip id: the same input gives the same manifest, however
often the run was interrupted and however many shards shared the work.

``shard`` (K, N) splits a collection across processes or machines with no coordination: a video
belongs to shard ``hash(its relative path) mod N``. Every shard lists the whole collection, so
each gives every video the same clip id.

Clip ids are readable (``class__clip``) and unique: a video whose readable id is taken (``a b.mp4``
beside ``a_b.mp4``, two non-Latin names, ``clip.mp4`` beside ``clip.webm``) gets a short hash of
its path appended, and a video keeps the id its record gave it on later runs.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import signal
import zlib
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from cacl_cli.config import ExtractSection
from cacl_cli.data import manifest
from cacl_cli.data.frames import decode, native_stderr_silenced
from cacl_cli.data.images import resize_short_side
from cacl_cli.data.layouts import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from cacl_cli.data.manifest import MANIFEST, RECORDS, REPORT
from cacl_cli.data.pairs import PairsFolder
from cacl_cli.data.tar_shards import ShardWriter, is_ended, repair, shard_files
from cacl_cli.data.worker_pool import guarded_map, usable_cores
from cacl_cli.errors import CaclError, RunFailed
from cacl_cli.files import (
    files_under,
    refuse_links,
    remove_stale_temps,
    temp_prefix,
    write_atomic,
    write_text_atomic,
)
from cacl_cli.progress import progress_bar

DEFAULT_EXTENSIONS = VIDEO_SUFFIXES
MAX_ID = 200  # characters (ASCII) of a clip id: CLIP.json and its temporary names stay in 255


class ClipTimeout(Exception):
    pass


def find_videos(root: Path, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS) -> list[Path]:
    """Every video under ``root`` (any depth, ``root`` included, through linked folders), sorted:
    each file whose suffix is a video extension, and each folder holding frames (image files)."""
    paths = files_under(root) if root.is_dir() else [root]
    files = [p for p in paths if p.is_file()]
    folders = {p.parent for p in files if p.suffix.lower() in IMAGE_SUFFIXES}
    return sorted([p for p in files if p.suffix.lower() in extensions] + list(folders))


def clip_id(root: Path, path: Path) -> str:
    """A safe, unique file name from the path relative to the root: ``class/clip.mp4`` and the
    frame folder ``class/clip/`` -> ``class__clip`` (a frame folder that is the root itself: its
    name). Only letters, digits, '-', '_' and '.' survive, so no id can name a folder above the
    output (no '/', no '..' component)."""
    relative = path.relative_to(root)
    if not path.is_dir():
        relative = relative.with_suffix("")
    names = relative.parts or (root.resolve().name,)
    parts = [re.sub(r"[^A-Za-z0-9_.-]", "_", part).strip(".") or "_" for part in names]
    cid = "__".join(parts)
    if len(cid) > MAX_ID:  # the id names files (CLIP.json, CLIP/...): keep it within a name
        digest = hashlib.sha1(str(relative).encode("utf-8", "surrogateescape")).hexdigest()[:8]
        cid = f"{cid[: MAX_ID - 9]}-{digest}"
    return cid


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


def process_clip(
    root: Path, path: Path, cid: str, out: Path, settings: ExtractSection, to_tar: bool = False
) -> dict:
    """Extract one clip; returns its record: done, skipped (a bad video, for good) or failed (an
    error of the machine, such as a full disk: no record is written, so a rerun retries it).
    ``to_tar``: the frames come back as JPEG bytes (``_jpegs``) for the parent's shard, which
    then writes the record itself."""
    record = {"clip": cid, "source": str(path.relative_to(root))}
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout)
    try:
        with native_stderr_silenced():
            record.update(_extract(path, cid, out, settings, to_tar))
    except ClipTimeout:
        record.update(status="skipped", reason=f"took longer than {settings.timeout:g} s")
    except (ValueError, cv2.error) as err:
        record.update(status="skipped", reason=str(err).splitlines()[0][:200])
    except OSError as err:
        return _failed(record, err, out / cid)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return record if to_tar and record["status"] == "done" else write_record(out, record)


def write_record(out: Path, record: dict) -> dict:
    """The record that marks a clip done or skipped; a full disk makes it failed instead."""
    final = out / RECORDS / f"{record['clip']}.json"
    for stale in final.parent.glob(f"{glob.escape(temp_prefix(final))}*.tmp"):  # a killed run's
        stale.unlink(missing_ok=True)
    try:
        write_text_atomic(final, json.dumps(record) + "\n")
    except OSError as err:
        return _failed(record, err, out / RECORDS)
    return record


def _failed(record: dict, err: OSError, where: Path) -> dict:
    where = err.filename or where
    kept = {k: record[k] for k in ("clip", "source")}
    return kept | {"status": "failed", "reason": f"{err.strerror or err} ({where})"}


def _extract(path: Path, cid: str, out: Path, settings: ExtractSection, to_tar: bool) -> dict:
    if not path.is_dir() and path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    need = settings.stride * (settings.frames_per_clip - 1) + 1

    def pick(count: int) -> list[int]:
        if count < need:
            raise ValueError(f"too short: {count} frames, {need} needed (stride {settings.stride})")
        starts = choose_starts(count, settings, cid)
        return [s + k * settings.stride for s in starts for k in range(settings.frames_per_clip)]

    count, fps, wanted, frames, decoder = decode(path, pick, settings.seek)
    height, width = frames[0].shape[:2]
    names, jpegs = [f"{cid}/{index:06d}.jpg" for index in wanted], []
    for index, frame in zip(wanted, frames):
        ok, data = cv2.imencode(
            ".jpg",
            cv2.cvtColor(resize_short_side(frame, settings.short_side), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, settings.quality],
        )
        if not ok:
            raise ValueError(f"frame {index} could not be encoded")
        jpegs.append(data.tobytes())
    if not to_tar:
        _write_frames(out, cid, names, jpegs)
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
        **({"_jpegs": jpegs} if to_tar else {}),
        "frames": groups,
        "checks": [[len(data), zlib.crc32(data)] for data in jpegs],  # what training verifies
        "indices": indices,
        "fps": fps,
        "frame_count": count,
        "size": [width, height],
        "decoder": decoder,
        "stride": settings.stride,
    }


def _write_frames(out: Path, cid: str, names: list[str], jpegs: list[bytes]) -> None:
    try:
        refuse_links(out / cid / "frame")
    except RunFailed as err:
        raise ValueError(str(err)) from None  # this clip is skipped, the others go on
    remove_stale_temps(out / cid)  # a killed run's; this clip's folder is this worker's alone
    for name, data in zip(names, jpegs):
        write_atomic(out / name, lambda fh: fh.write(data))


# ---------------------------------------------------------------- the whole folder


def extract_folder(
    video_dir: Path,
    out: Path,
    section: ExtractSection,
    overwrite: bool,
    console,
    shard: tuple[int, int] = (0, 1),
) -> dict:
    """This shard's videos under ``video_dir`` not yet done, in ``section.workers`` processes,
    then the merge. Returns {done, skipped, left, failed: [records]}; failed clips are retried
    by a rerun, ``left`` counts the collection's videos no shard has done yet."""
    videos = _listing(video_dir, section)
    out.mkdir(parents=True, exist_ok=True)
    if (out / RECORDS).is_symlink():
        raise CaclError(f"{out / RECORDS} is a link; remove it, it must be a folder")
    if overwrite:
        manifest.clear(out)
    manifest.check_settings(out, section)
    known = manifest.known_sources(out)
    ids = assign_ids(video_dir, videos, known)
    mine = [v for v in videos if in_shard(str(v.relative_to(video_dir)), shard)]
    changed = set(_changed_since(out, shard, console))
    todo = [
        (v, ids[v]) for v in mine if str(v.relative_to(video_dir)) not in known.keys() - changed
    ]
    which = f" in shard {shard[0]} of {shard[1]}" if shard[1] > 1 else ""
    console.print(
        f"{len(mine)} videos{which}, {len(mine) - len(todo)} already done, {len(todo)} to extract"
    )
    _end_killed_shards(out, _tag(shard), set(known.values()))
    failed = _run_pool(video_dir, out, section, todo, _tag(shard), console)
    merging = bool(todo or manifest.pending_records(out) or not (out / MANIFEST).is_file())
    try:
        if merging:
            manifest.merge(out, section)
    except OSError as err:
        first = f" (first: {failed[0]['source']}: {failed[0]['reason']})" if failed else ""
        raise RunFailed(
            f"{out / MANIFEST}: could not write it ({err.strerror or err}); {len(failed)} of "
            f"{len(todo)} clips failed{first}; free space, then rerun the same command"
        ) from None
    # Without a merge nothing changed since ``known`` was read: no second load of the index.
    summary = _summary(video_dir, videos, out, failed, None if merging else known)
    return summary | {"shards": shard[1]}


def _changed_since(out: Path, shard: tuple[int, int], console) -> list[str]:
    """This shard's clips whose frames differ from what was extracted (each frame's size and
    CRC-32 are in the manifest): redone by this run. Reads every frame of the shard's clips."""
    index = manifest.load_index(out, rebuilding=True)
    if index is None or not index.draws:
        return []
    changed = PairsFolder(out, rebuilding=True).changed_sources(lambda s: in_shard(s, shard))
    if changed:
        console.print(
            f"{len(changed)} clips whose frames changed since they were extracted "
            f"(first: {changed[0]}): extracted again"
        )
    return changed


def merge_folder(video_dir: Path, out: Path, section: ExtractSection) -> dict:
    """``--merge``: fold the records every shard left into the manifest, extract nothing."""
    videos = _listing(video_dir, section)
    if not (out / MANIFEST).is_file() and not manifest.pending_records(out):
        raise CaclError(f"--merge: {out} holds no extraction (no {MANIFEST}, no {RECORDS}/)")
    manifest.check_settings(out, section)
    manifest.merge(out, section)
    return _summary(video_dir, videos, out, []) | {"shards": 0}


def _summary(
    video_dir: Path, videos: list[Path], out: Path, failed: list[dict], known: dict | None = None
) -> dict:
    """The done / skipped / failed counts, and the videos no shard has done; ``known`` is the
    folder's ``known_sources`` where the caller already holds it."""
    merged = manifest.known_sources(out) if known is None else known
    skipped = len(manifest.read_report(out))
    left = sum(str(v.relative_to(video_dir)) not in merged for v in videos)
    return {"done": len(merged) - skipped, "skipped": skipped, "left": left, "failed": failed}


def _listing(video_dir: Path, section: ExtractSection) -> list[Path]:
    if not video_dir.is_dir():
        raise CaclError(f"{video_dir} is not a folder of videos")
    suffixes = tuple(e if e.startswith(".") else f".{e}" for e in section.extensions)
    suffixes = suffixes or DEFAULT_EXTENSIONS
    videos = find_videos(video_dir, tuple(s.lower() for s in suffixes))
    if not videos:
        raise CaclError(
            f"{video_dir} holds no videos ({' '.join(suffixes)}) and no frame folders "
            f"({' '.join(IMAGE_SUFFIXES)})"
        )
    return videos


def in_shard(source: str, shard: tuple[int, int]) -> bool:
    """Whether the video at relative path ``source`` is shard K's of N: a stable hash of the
    path, so it does not depend on what else the collection holds."""
    digest = hashlib.sha1(source.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % shard[1] == shard[0]


def _run_pool(video_dir, out, section, todo, tag, console) -> list[dict]:
    """Extract ``todo`` in worker processes; returns the failed records."""
    if not todo:
        return []  # starting the workers alone takes seconds
    to_tar = section.format == "tar"
    writer = ShardWriter(out, tag, int(section.shard_size * 1e6)) if to_tar else None
    failed = []
    job = partial(_safe_process, video_dir, out, section, to_tar)
    workers = section.workers or usable_cores()
    with progress_bar(console, "extract") as progress:
        task = progress.add_task("extract", total=len(todo), status="")
        for clip, record in guarded_map(job, todo, workers, section.timeout + 60, worker_init):
            record = record or _crashed(video_dir, out, clip)
            if "_jpegs" in record:
                record = _into_shard(writer, out, record)
            if record["status"] == "failed":
                failed.append(record)
            speed = progress.tasks[0].speed
            progress.update(task, advance=1, status=f"{speed:.1f} clips/s" if speed else "")
    if writer is not None:
        writer.close()
    return failed


def _crashed(root: Path, out: Path, clip: tuple[Path, str]) -> dict:
    """The record of a video whose worker died or hung on it twice, the second time alone."""
    path, cid = clip
    reason = "its decoder crashed or hung (the worker process died on it twice)"
    record = {"clip": cid, "source": str(path.relative_to(root)), "status": "skipped"}
    return write_record(out, record | {"reason": reason})


def _tag(shard: tuple[int, int]) -> str:
    """What this shard's tar files are named with: pairs-<tag>000000.tar."""
    return f"{shard[0]}of{shard[1]}-" if shard[1] > 1 else ""


def _end_killed_shards(out: Path, tag: str, recorded: set[str]) -> None:
    """End the tar shards a killed run of this shard left open (only this shard may: another
    shard's may still be written)."""
    for path in shard_files(out, tag):
        if not is_ended(path):
            repair(path, recorded)


def _into_shard(writer: ShardWriter, out: Path, record: dict) -> dict:
    jpegs = record.pop("_jpegs")
    try:
        record = writer.add_clip(record, jpegs)
    except OSError as err:
        writer.abandon()
        return _failed(record, err, out)
    return write_record(out, record)


def _safe_process(
    root: Path, out: Path, settings: ExtractSection, to_tar: bool, clip: tuple[Path, str]
) -> dict:
    """Run one clip; an unexpected error marks it failed (no record, so a rerun retries it)."""
    path, cid = clip
    try:
        return process_clip(root, path, cid, out, settings, to_tar)
    except Exception as err:  # noqa: BLE001 - reported per clip, the run goes on
        return {"status": "failed", "source": str(path), "reason": repr(err)[:200]}


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
    if summary["left"] and summary["shards"] != 1:  # unsharded, the failed ones are named above
        console.print(
            f"{summary['left']} videos of the collection are in no shard's records yet: "
            "run (or rerun) the other shards; the last to finish completes the manifest"
        )
