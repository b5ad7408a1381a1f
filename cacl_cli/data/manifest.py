"""A pairs folder's bookkeeping: per-clip records, their merge into the manifest, the index.

While clips are extracted each one leaves a small record in ``.records/`` (done, or skipped
for a bad file). A merge folds every record present into three files, each written under a
temporary name and renamed:

- ``manifest.jsonl``: a header line, then one line per done clip, sorted by clip id;
- ``skipped.tsv``: the bad files and why (tabs and newlines in names escaped);
- ``index.bin``: the manifest's working form for training (``pair_index.py``);

then deletes the records it folded in. So a folder's state is the merged files plus the records
not merged yet: a rerun that finds nothing left reads no record, and one with k clips left
reads k. Merges take a lock of their own, so shards extracting into one folder at once (each with
its own clips) never lose each other's work; the last one to finish leaves the full manifest.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import re
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from cacl_cli.config import ExtractSection
from cacl_cli.data.pair_index import (
    INDEX,
    PairIndex,
    index_arrays,
    read_index,
    with_clips,
    write_arrays,
    write_index,
)
from cacl_cli.errors import CaclError
from cacl_cli.files import (
    open_for_writing,
    open_regular,
    parse_json,
    present,
    read_bytes,
    remove_stale_temps,
    write_atomic,
    write_text_atomic,
)
from cacl_cli.run_folder import LOCK

RECORDS = ".records"
MANIFEST = "manifest.jsonl"
MANIFEST_WHAT = "the manifest extract-pairs wrote"  # what a reader says it expected
REPORT = "skipped.tsv"
MERGE_LOCK = f"{LOCK}.merge"  # the folder's lock name + a part: not counted as contents
# Settings that change what a pair is; a folder keeps one value of each (workers etc. may change).
PAIR_SETTINGS = ("stride", "frames_per_clip", "pairs_per_clip", "short_side", "quality", "seed")
SAFE_ID = re.compile(r"[A-Za-z0-9_.-]+")  # what extract.clip_id makes: a name, never a path


# ---------------------------------------------------------------- reading what is there


def pending_records(out: Path) -> list[Path]:
    """Record files not merged yet."""
    folder = out / RECORDS
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def read_record(path: Path) -> dict | None:
    """A record file, or None for one a damaged disk (or a hand) left unreadable, missing a field
    or holding one of the wrong kind (``checked``): its clip is then simply done again."""
    try:
        record = parse_json(read_bytes(path, "a clip record"), str(path))
    except (ValueError, CaclError):
        return None
    if not isinstance(record, dict) or not all(
        isinstance(record.get(k), str) for k in ("clip", "source", "status")
    ):
        return None
    wanted = {"done": "frames", "skipped": "reason"}.get(record["status"])
    if wanted is None or wanted not in record:
        return None
    try:
        return checked(record, path, 1) if record["status"] == "done" else record
    except CaclError:
        return None


def known_sources(out: Path) -> dict[str, str]:
    """source -> clip id of every video done or skipped: merged or still a record."""
    known = {}
    index = load_index(out, rebuilding=True)
    if index is not None:
        known |= {index.sources[i]: index.clips[i] for i in range(len(index.sources))}
    known |= {source: "" for source, _ in read_report(out)}  # a skipped clip keeps no frames
    for path in pending_records(out):
        record = read_record(path)
        if record is None:
            path.unlink(missing_ok=True)
        else:
            known[record["source"]] = record["clip"]
    return known


def load_index(out: Path, rebuilding: bool = False) -> PairIndex | None:
    """The folder's index: the mapped file where it stands for the manifest, else built in
    memory from the manifest (an older folder, a hand-made manifest); None without one.
    ``rebuilding``: the caller (an extraction) writes the index anew, so a damaged one is
    passed over for the manifest instead of refused."""
    manifest = out / MANIFEST
    if not present(manifest):
        return None
    index = _index_unless_damaged(out, manifest) if rebuilding else read_index(out, manifest)
    if index is None:
        index = PairIndex(index_arrays(read_manifest(manifest)[1]), {})
    return index


def read_manifest(manifest: Path) -> tuple[dict, list[dict]]:
    """(header, done records), every field checked; a bad line is a one-line error."""
    header, records = {}, []
    lines = read_bytes(manifest, MANIFEST_WHAT).decode(errors="replace")
    lines = lines.splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line, f"{manifest}, line {n}")
        except ValueError:
            record = None
        if not isinstance(record, dict):
            raise CaclError(
                f"{manifest}, line {n}: not a JSON record; rerun `cacl extract-pairs` with "
                "--overwrite to rebuild the manifest"
            )
        if n == 1 and "cacl_pairs" in record:
            header = record
        else:
            records.append(checked(record, manifest, n))
    return header, records


def checked(record: dict, manifest: Path, line: int) -> dict:
    """A manifest line (or a done clip's record) whose fields a reader can rely on: ``clip`` and
    ``source`` text, the clip id a safe file name; ``frames`` lists of two or more names inside
    the folder (no NUL, no absolute path, no '..'); for a tar shard, a shard name and members
    with an offset and a size. Anything else is a one-line error naming the line."""
    where = f"{manifest}, line {line}"
    clip, source = record.get("clip", f"line-{line}"), record.get("source", "")
    if not (isinstance(clip, str) and SAFE_ID.fullmatch(clip) and isinstance(source, str)):
        raise CaclError(
            f"{where}: 'clip' must be a clip id (letters, digits, - _ .) and 'source' text"
        )
    groups = record.get("frames")
    if not (
        isinstance(groups, list)
        and groups
        and all(
            isinstance(g, list) and len(g) >= 2 and all(isinstance(n, str) for n in g)
            for g in groups
        )
    ):
        raise CaclError(f"{where}: 'frames' must be lists of two or more frame file names")
    tar = record.get("tar")
    if "tar" in record and not isinstance(tar, str):
        raise CaclError(f"{where}: 'tar' must name a shard")
    for name in [n for g in groups for n in g] + ([tar] if tar else []):
        if not name or "\0" in name or Path(name).is_absolute() or ".." in Path(name).parts:
            raise CaclError(
                f"{where}: frame {name!r} lies outside {manifest.parent}; a manifest names frames "
                "relative to its own folder"
            )
    members = record.get("members") if "tar" in record else {}
    if "tar" in record and not (
        isinstance(members, dict)
        and all(
            isinstance(members.get(n), list)
            and len(members[n]) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in members[n])
            for g in groups
            for n in g
        )
    ):
        raise CaclError(f"{where}: a frame has no [offset, size] in 'members'")
    checks = record.get("checks")
    if "checks" in record and not (
        isinstance(checks, list)
        and len(checks) == sum(map(len, groups))
        and all(
            isinstance(c, list)
            and len(c) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**32 for v in c)
            for c in checks
        )
    ):
        raise CaclError(f"{where}: 'checks' must give each frame its [size, CRC-32]")
    return {**record, "clip": clip, "source": source}


def read_report(out: Path) -> list[tuple[str, str]]:
    """(source, reason) rows of skipped.tsv."""
    path = out / REPORT
    if not path.is_file():
        return []
    rows = path.read_text(errors="surrogateescape").splitlines()[1:]
    return [tuple(_unescape(cell) for cell in row.split("\t", 1)) for row in rows if "\t" in row]


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _unescape(text: str) -> str:
    swaps = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}
    return "".join(swaps.get(part, part) for part in _split_escapes(text))


def _split_escapes(text: str) -> Iterator[str]:
    i = 0
    while i < len(text):
        step = 2 if text[i] == "\\" and i + 1 < len(text) else 1
        yield text[i : i + step]
        i += step


# ---------------------------------------------------------------- merging


@contextlib.contextmanager
def merge_lock(out: Path) -> Iterator[None]:
    """One merge at a time in a folder (a merge takes seconds; others wait for it)."""
    with open_for_writing(out / MERGE_LOCK) as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def merge(out: Path, settings: ExtractSection) -> tuple[int, int]:
    """Fold every record present into manifest.jsonl, skipped.tsv and index.bin; returns the
    (done, skipped) totals."""
    with merge_lock(out):
        for name in (MANIFEST, REPORT, INDEX):
            for stale in out.glob(f".{name}.*.tmp"):  # a merge killed before its rename
                stale.unlink(missing_ok=True)
        paths = pending_records(out)
        records = {}
        for path in paths:
            record = read_record(path)
            if record is not None:
                records[record["clip"]] = record
        skipped = dict(read_report(out))
        for record in records.values():
            if record["status"] == "done":
                skipped.pop(record["source"], None)
            else:
                skipped[record["source"]] = record["reason"]
        done = [r for _, r in sorted(records.items()) if r["status"] == "done"]
        header = {"cacl_pairs": 1, "settings": settings_record(settings)}
        total = _insert(out, done, header)
        if total is None:
            total = _rewrite(out, done, header)
        report = "source\treason\n" + "".join(
            f"{_escape(s)}\t{_escape(r)}\n" for s, r in sorted(skipped.items())
        )  # a name that is not UTF-8 is written back as the bytes it was read from
        write_atomic(out / REPORT, lambda fh: fh.write(report.encode("utf-8", "surrogateescape")))
        for path in paths:
            path.unlink(missing_ok=True)
    return total, len(skipped)


def _insert(out: Path, new: list[dict], header: dict) -> int | None:
    """The new clips inserted into the manifest's lines and the index's arrays, in clip order,
    without reading the old records: seconds for Kinetics-400, whatever it holds. None where
    that cannot be done (no index for this manifest, or a clip done again)."""
    manifest = out / MANIFEST
    index = _index_unless_damaged(out, manifest) if present(manifest) else None
    if index is None:
        return None
    before = [bisect.bisect_left(index.clips, record["clip"]) for record in new]
    if any(p < len(index.clips) and index.clips[p] == r["clip"] for p, r in zip(before, new)):
        return None
    lines = read_bytes(manifest, MANIFEST_WHAT).split(b"\n")[1:-1]  # the header, the final newline
    if len(lines) != len(index.clips):
        return None
    pieces, previous = [json.dumps(header).encode()], 0
    for position, record in zip(before, new):
        pieces += lines[previous:position] + [json.dumps(record).encode()]
        previous = position
    pieces += lines[previous:]
    arrays = with_clips(index, new, before)
    write_atomic(manifest, lambda fh: fh.write(b"\n".join(pieces) + b"\n"))
    write_arrays(out, arrays, manifest)
    return len(pieces) - 1


def _index_unless_damaged(out: Path, manifest: Path) -> PairIndex | None:
    """The index is derived from the manifest: a damaged one is rebuilt by the merge."""
    try:
        return read_index(out, manifest)
    except CaclError:
        return None


def _rewrite(out: Path, new: list[dict], header: dict) -> int:
    """The manifest and index written whole from the old manifest's records and the new ones."""
    manifest = out / MANIFEST
    done = {r["clip"]: r for r in read_manifest(manifest)[1]} if present(manifest) else {}
    done |= {r["clip"]: r for r in new}
    records = [done[clip] for clip in sorted(done)]
    lines = "".join(json.dumps(r) + "\n" for r in [header] + records)
    write_text_atomic(manifest, lines)
    write_index(out, records, manifest)
    return len(records)


def settings_record(settings: ExtractSection) -> dict:
    """The ``extract`` section as the manifest's header records it."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items()}


def check_settings(out: Path, settings: ExtractSection) -> None:
    """Refuse to add pairs of other settings to a folder extracted before (its manifest says)."""
    manifest = out / MANIFEST
    if not present(manifest):
        return
    with open_regular(manifest, MANIFEST_WHAT) as fh:
        first = fh.readline(1 << 20)
    try:
        before = parse_json(first, str(manifest))["settings"]
        if not isinstance(before, dict):
            raise TypeError("settings")
    except (ValueError, KeyError, TypeError):
        raise CaclError(
            f"{manifest}: unreadable header; pass --overwrite to extract again"
        ) from None
    now = settings_record(settings)
    for key in PAIR_SETTINGS:
        if key in before and before[key] != now[key]:
            raise CaclError(
                f"{out} was extracted with {key} {before[key]}, not {now[key]}; pass --overwrite "
                f"to redo it with {key} {now[key]}, or give another --out"
            )


def clear(out: Path) -> None:
    """``--overwrite``: forget every clip (the frames are written again, the shards anew)."""
    with merge_lock(out):
        shutil.rmtree(out / RECORDS, ignore_errors=True)
        for name in (MANIFEST, REPORT, INDEX):
            (out / name).unlink(missing_ok=True)
        for shard in out.glob("pairs-*.tar"):
            shard.unlink()
    remove_stale_temps(out, recursive=True)
