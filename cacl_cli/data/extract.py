"""Turning a video collection into training pairs: discovery, decoding, writing, the manifest.

Each clip is handled by one worker: it opens its own reader (decord, else OpenCV), picks
``pairs_per_clip`` starts from a generator seeded by the clip id, decodes only the frames it needs,
writes them as JPEGs (temp name, then rename) and finally a small record in ``.records/``. That
record marks the clip done, so a rerun skips it. The manifest and the report of skipped files are
assembled from the records at the end, sorted by clip id: the same input gives the same manifest,
however often the run was interrupted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from cacl_cli.data.frames import native_stderr_silenced
from cacl_cli.files import write_atomic, write_text_atomic

RECORDS = ".records"
MANIFEST = "manifest.jsonl"
REPORT = "skipped.tsv"
DEFAULT_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ts",
)


@dataclass(frozen=True)
class ExtractSettings:
    stride: int = 8
    pairs_per_clip: int = 1
    frames_per_clip: int = 2  # frames per pair: 2, or more spaced by the stride
    short_side: int = 256
    quality: int = 90
    seed: int = 0
    timeout_s: float = 120.0
    seek: bool = False  # jump to keyframes: faster, inexact on open-GOP files


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


def choose_starts(count: int, settings: ExtractSettings, cid: str) -> list[int]:
    """Seeded start frames for the clip's pairs (distinct where the clip allows)."""
    span = settings.stride * (settings.frames_per_clip - 1)
    choices = count - span
    rng = np.random.default_rng([settings.seed, zlib.crc32(cid.encode())])
    n = min(settings.pairs_per_clip, choices)
    return sorted(int(s) for s in rng.choice(choices, size=n, replace=False))


# ---------------------------------------------------------------- decoding


def _read_decord(path: Path, pick: Callable[[int], list[int]], seek: bool) -> tuple | None:
    """(count, fps, wanted, frames) read with decord, or None where decord cannot open the file
    or cannot reach the frames. A too-short clip raises ValueError from ``pick``.

    Without ``seek`` frames are decoded in order from the first one up to the last wanted: exact
    on every file. With ``seek`` decord jumps to the nearest keyframe: faster, but on files whose
    keyframes are not clean entry points (open GOPs) it returns damaged frames.
    """
    try:
        import decord
    except ImportError:
        return None
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
        count, fps = len(reader), float(reader.get_avg_fps())
    except Exception:  # decord raises its own error types on files it cannot open
        return None
    wanted = pick(count)
    try:
        if seek:
            batch = reader.get_batch(wanted).asnumpy()
            return count, fps, wanted, [batch[i] for i in range(len(wanted))]
        found, targets = {}, set(wanted)
        for t in range(max(wanted) + 1):
            frame = reader.next()
            if t in targets:
                found[t] = frame.asnumpy()
        return count, fps, wanted, [found[i] for i in wanted]
    except Exception:  # the container promised frames the stream does not hold
        return None
    finally:
        del reader  # one reader per clip, released at once (decord's memory growth)


def _read_opencv(path: Path, pick: Callable[[int], list[int]]) -> tuple:
    """(count, fps, wanted, frames) by sequential decoding: a first pass counts the frames
    (container counts can lie), a second retrieves only the wanted ones."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError("not a video that decord or OpenCV can open")
    fps, count = float(cap.get(cv2.CAP_PROP_FPS) or 0.0), 0
    while cap.grab():
        count += 1
    cap.release()
    wanted = pick(count)
    cap, found, t = cv2.VideoCapture(str(path)), {}, 0
    while t <= max(wanted) and cap.grab():
        if t in wanted:
            ok, frame = cap.retrieve()
            if not ok:
                raise ValueError(f"frame {t} could not be decoded")
            found[t] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        t += 1
    cap.release()
    if len(found) < len(set(wanted)):
        raise ValueError(f"decoding stopped at frame {t}, before frame {max(wanted)}")
    return count, fps, wanted, [found[i] for i in wanted]


def resize_short_side(frame: np.ndarray, short_side: int) -> np.ndarray:
    h, w = frame.shape[:2]
    if short_side <= 0 or min(h, w) == short_side:
        return frame
    scale = short_side / min(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------- one clip


def _on_alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise ClipTimeout()


def process_clip(root: Path, path: Path, out: Path, settings: ExtractSettings) -> dict:
    """Extract one clip; returns its record (status done or skipped, with a reason)."""
    cid = clip_id(root, path)
    record = {"clip": cid, "source": str(path.relative_to(root))}
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, settings.timeout_s)
    try:
        with native_stderr_silenced():
            record.update(_extract(path, cid, out, settings))
    except ClipTimeout:
        record.update(status="skipped", reason=f"took longer than {settings.timeout_s:g} s")
    except (ValueError, OSError, cv2.error) as err:
        record.update(status="skipped", reason=str(err).splitlines()[0][:200])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    write_text_atomic(out / RECORDS / f"{cid}.json", json.dumps(record) + "\n")
    return record


def _refuse_links_outside(out: Path, target: Path) -> None:
    """Writing through a link that leads out of the output folder is refused."""
    if target.is_symlink() or not target.resolve().is_relative_to(out.resolve()):
        raise ValueError(f"{target} leads outside {out}; remove that link")


def _extract(path: Path, cid: str, out: Path, settings: ExtractSettings) -> dict:
    if path.stat().st_size == 0:
        raise ValueError("empty file (0 bytes)")
    need = settings.stride * (settings.frames_per_clip - 1) + 1

    def pick(count: int) -> list[int]:
        if count < need:
            raise ValueError(f"too short: {count} frames, {need} needed (stride {settings.stride})")
        starts = choose_starts(count, settings, cid)
        return [s + k * settings.stride for s in starts for k in range(settings.frames_per_clip)]

    got, decoder = _read_decord(path, pick, settings.seek), "decord"
    if got is None:
        got, decoder = _read_opencv(path, pick), "opencv"
    count, fps, wanted, frames = got
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


def done_clips(out: Path) -> set[str]:
    """Clips whose record exists: finished (or skipped) by an earlier run."""
    folder = out / RECORDS
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def write_manifest(out: Path, settings: ExtractSettings) -> tuple[int, int]:
    """Assemble manifest.jsonl and skipped.tsv from the records; returns (done, skipped)."""
    records = [json.loads(p.read_text()) for p in sorted((out / RECORDS).glob("*.json"))]
    done = [r for r in records if r["status"] == "done"]
    skipped = [r for r in records if r["status"] != "done"]
    header = {"cacl_pairs": 1, "settings": asdict(settings)}
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
