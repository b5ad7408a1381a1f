"""The working form of a pairs manifest: flat arrays in one file, memory-mapped by every reader.

For Kinetics-400 the manifest holds 240k clips; read as JSON into Python dicts it takes ~10 s
and ~0.6 GB in every rank, and every loader worker that touches the dicts copies them (each
read of a Python object writes its reference count). Here the same facts are a few numpy
arrays in ``index.bin``, mapped read-only: the pages are the file's, shared by every process
on the machine, so a rank or a worker adds almost nothing.

Layout: a JSON header line (array names, dtypes, shapes, byte offsets, the data's SHA-256 and
the manifest it was built from), then the arrays, each 64-byte aligned. A file cacl wrote is
input like any other: a reader checks the header's fields, the file's size and checksum, then
the arrays against each other (lengths, ranges, frame files relative and inside the folder), so
a hand-made index with a matching stamp names no frame outside the folder.

A frame is ``files[file][offset : offset + size]``: for the folder format ``files`` names every
JPEG (offset 0, size -1: the whole file); for the tar format it names the shards and each frame
is one member's data. Draw ``d`` is frames ``draw_start[d] .. draw_start[d + 1] - 1``. Each
frame's byte count and CRC-32 as extracted (``frame_bytes``, ``frame_crc``; -1 and 0 for a
manifest written before they were recorded) let a reader tell a frame changed since.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
from pathlib import Path
from typing import Iterable

import numpy as np

from cacl_cli.errors import CaclError
from cacl_cli.files import open_regular, parse_json, present, write_atomic

INDEX = "index.bin"
ALIGN = 64
# Every array of an index and its dtype (what index_arrays writes).
DTYPES = {
    "draw_start": np.int64,
    "frame_file": np.int32,
    "frame_offset": np.int64,
    "frame_size": np.int64,
    "frame_bytes": np.int64,
    "frame_crc": np.int64,
    "clip_draw_start": np.int64,
    **{
        f"{name}_{part}": np.uint8 if part == "blob" else np.int64
        for name in ("file", "clip", "source")
        for part in ("blob", "starts")
    },
}
CHECKS = {"frame_bytes", "frame_crc"}  # absent from an index written before frames were checked


class Strings:
    """Many strings as one UTF-8 blob and its offsets: 2 arrays instead of 240k objects."""

    def __init__(self, blob: np.ndarray, starts: np.ndarray) -> None:
        self.blob, self.starts = blob, starts

    @classmethod
    def of(cls, texts: Iterable[str]) -> "Strings":
        encoded = [t.encode("utf-8", "surrogateescape") for t in texts]
        starts = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=starts[1:])
        return cls(np.frombuffer(b"".join(encoded), np.uint8), starts)

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, i: int) -> str:
        raw = self.blob[self.starts[i] : self.starts[i + 1]].tobytes()
        return raw.decode("utf-8", "surrogateescape")


class PairIndex:
    """The arrays of ``index.bin`` (or built in memory from a manifest's records)."""

    def __init__(self, arrays: dict[str, np.ndarray], meta: dict) -> None:
        self.arrays, self.meta = arrays, meta
        self.clips = Strings(arrays["clip_blob"], arrays["clip_starts"])
        self.sources = Strings(arrays["source_blob"], arrays["source_starts"])
        self.files = Strings(arrays["file_blob"], arrays["file_starts"])
        self.draw_start = arrays["draw_start"]
        self.frame_file, self.frame_offset = arrays["frame_file"], arrays["frame_offset"]
        self.frame_size = arrays["frame_size"]
        self.frame_bytes, self.frame_crc = arrays["frame_bytes"], arrays["frame_crc"]

    @property
    def draws(self) -> int:
        return len(self.draw_start) - 1

    def draw(self, d: int) -> range:
        """The frame numbers of draw ``d``."""
        return range(int(self.draw_start[d]), int(self.draw_start[d + 1]))

    def expected(self, frame: int) -> tuple[int, int] | None:
        """(byte count, CRC-32) the frame was extracted with, or None where not recorded."""
        size = int(self.frame_bytes[frame])
        return None if size < 0 else (size, int(self.frame_crc[frame]))

    def clip_of(self, frame: int) -> str:
        """The id of the clip a frame belongs to."""
        draw = int(np.searchsorted(self.draw_start, frame, side="right")) - 1
        return self.clips[int(np.searchsorted(self.arrays["clip_draw_start"], draw, "right")) - 1]

    def location(self, frame: int) -> tuple[str, int, int]:
        """(file relative to the pairs folder, byte offset, size or -1 for the whole file)."""
        return (
            self.files[int(self.frame_file[frame])],
            int(self.frame_offset[frame]),
            int(self.frame_size[frame]),
        )


def index_arrays(records: list[dict]) -> dict[str, np.ndarray]:
    """The arrays for ``records`` (done clips, in manifest order), each field checked once."""
    clips, sources, files, file_numbers = [], [], [], {}
    draw_start, frame_file, frame_offset, frame_size, clip_draw_start = [0], [], [], [], [0]
    checks: list[list[int]] = []
    for record in records:
        clips.append(record["clip"])
        sources.append(record["source"])
        clip_draw_start.append(clip_draw_start[-1] + len(record["frames"]))
        count = sum(map(len, record["frames"]))
        checks += record.get("checks") or [[-1, 0]] * count  # an older manifest: unrecorded
        for group in record["frames"]:
            for name, offset, size in _frame_locations(record, group):
                frame_file.append(file_numbers.setdefault(name, len(file_numbers)))
                frame_offset.append(offset)
                frame_size.append(size)
            draw_start.append(len(frame_file))
    files = sorted(file_numbers, key=file_numbers.get)
    checked = np.array(checks, np.int64).reshape(-1, 2)
    arrays = {
        "draw_start": np.array(draw_start, np.int64),
        "frame_file": np.array(frame_file, np.int32),
        "frame_offset": np.array(frame_offset, np.int64),
        "frame_size": np.array(frame_size, np.int64),
        "frame_bytes": np.ascontiguousarray(checked[:, 0]),
        "frame_crc": np.ascontiguousarray(checked[:, 1]),
        "clip_draw_start": np.array(clip_draw_start, np.int64),
    }
    # What training reads first, side by side; the ids and sources (extraction's) last.
    for name, texts in (("file", files), ("clip", clips), ("source", sources)):
        strings = Strings.of(texts)
        arrays[f"{name}_blob"], arrays[f"{name}_starts"] = strings.blob, strings.starts
    return arrays


def _frame_locations(record: dict, group: list) -> list[tuple[str, int, int]]:
    """A draw's frames as (file, offset, size): a JPEG each, or members of the record's tar."""
    if "tar" not in record:
        return [(name, 0, -1) for name in group]
    members = record["members"]
    return [(record["tar"], *members[name]) for name in group]


def with_clips(index: PairIndex, records: list[dict], before: list[int]) -> dict[str, np.ndarray]:
    """The arrays of ``index`` with ``records`` inserted, record j before old clip ``before[j]``
    (non-decreasing): a merge of k new clips into n costs k slices and a copy, not n records."""
    old, new = index.arrays, index_arrays(records)
    merged = {}
    for name in ("clip", "source"):
        merged[f"{name}_blob"], merged[f"{name}_starts"] = _interleave(
            old[f"{name}_blob"],
            old[f"{name}_starts"],
            new[f"{name}_blob"],
            new[f"{name}_starts"],
            before,
        )
    lengths = (np.diff(old["draw_start"]), np.diff(new["draw_start"]))  # frames per draw
    draw_lengths, merged["clip_draw_start"] = _interleave(
        lengths[0], old["clip_draw_start"], lengths[1], new["clip_draw_start"], before
    )
    merged["draw_start"] = np.concatenate([[0], np.cumsum(draw_lengths)]).astype(np.int64)
    clip_frames = (
        old["draw_start"][old["clip_draw_start"]],
        new["draw_start"][new["clip_draw_start"]],
    )
    new = new | {"frame_file": new["frame_file"] + len(index.files)}  # files appended below
    for name in ("frame_file", "frame_offset", "frame_size", "frame_bytes", "frame_crc"):
        merged[name] = _interleave(old[name], clip_frames[0], new[name], clip_frames[1], before)[0]
    merged["file_blob"] = np.concatenate([old["file_blob"], new["file_blob"]])
    merged["file_starts"] = np.concatenate(
        [old["file_starts"], new["file_starts"][1:] + old["file_starts"][-1]]
    )
    return {name: merged[name] for name in new}  # the layout index_arrays gives


def _interleave(values, starts, new_values, new_starts, before):
    """Two ragged arrays (``values[starts[i]:starts[i + 1]]`` is item i) merged: new item j
    before old item ``before[j]``. Returns (values, starts)."""
    pieces, sizes, previous = [], [], 0
    old_sizes, new_sizes = np.diff(starts), np.diff(new_starts)
    for j, position in enumerate(before):
        pieces += [
            values[starts[previous] : starts[position]],
            new_values[new_starts[j] : new_starts[j + 1]],
        ]
        sizes += [old_sizes[previous:position], new_sizes[j : j + 1]]
        previous = position
    pieces.append(values[starts[previous] :])
    sizes.append(old_sizes[previous:])
    lengths = np.concatenate(sizes)
    merged_starts = np.concatenate([[0], np.cumsum(lengths)]).astype(starts.dtype)
    return np.concatenate(pieces).astype(values.dtype), merged_starts


def write_index(folder: Path, records: list[dict], manifest: Path) -> None:
    """``folder/index.bin`` for ``records``, stamped with the manifest it stands for."""
    write_arrays(folder, index_arrays(records), manifest)


def write_arrays(folder: Path, arrays: dict[str, np.ndarray], manifest: Path) -> None:
    """``folder/index.bin`` holding ``arrays``, stamped with the manifest it stands for."""
    layout, offset = {}, 0
    for name, array in arrays.items():
        offset = -(-offset // ALIGN) * ALIGN
        layout[name] = [array.dtype.str, list(array.shape), offset]
        offset += array.nbytes
    data = bytearray(offset)
    for name, array in arrays.items():
        start = layout[name][2]
        data[start : start + array.nbytes] = array.tobytes()
    header = {
        "cacl_index": 1,
        "arrays": layout,
        "data_bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "manifest": _stamp(manifest),
    }
    line = json.dumps(header).encode() + b"\n"
    line += b" " * (-len(line) % ALIGN)
    write_atomic(folder / INDEX, lambda fh: (fh.write(line), fh.write(data)))


def _stamp(manifest: Path) -> list[int]:
    info = manifest.stat()
    return [info.st_size, info.st_mtime_ns]


def read_index(folder: Path, manifest: Path) -> PairIndex | None:
    """The mapped index, or None where there is none or it stands for another manifest (a
    hand-edited one, or an older tree): the caller then builds it from the manifest. A damaged
    or hand-made one is a one-line error saying what is wrong with it."""
    path = folder / INDEX
    if not present(path):
        return None
    with open_regular(path, "the index extract-pairs wrote") as fh:
        line = fh.readline(1 << 20)
    try:
        header = _checked_header(parse_json(line, "its header"))
    except ValueError as err:
        raise _damaged(path, str(err)) from None
    legacy = header["arrays"].keys() == DTYPES.keys() - CHECKS  # before frames were checked
    if header["manifest"] != _stamp(manifest) or legacy:
        return None  # the caller builds it from the manifest
    start = -(-len(line) // ALIGN) * ALIGN
    if os.path.getsize(path) != start + header["data_bytes"]:
        raise _damaged(path, "wrong size")
    with open_regular(path, "the index extract-pairs wrote") as fh:
        mapped = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    if hashlib.sha256(memoryview(mapped)[start:]).hexdigest() != header["sha256"]:
        raise _damaged(path, "checksum differs")
    arrays = {
        name: np.frombuffer(mapped, np.dtype(dtype), shape[0], start + offset)
        for name, (dtype, shape, offset) in header["arrays"].items()
    }
    try:
        index = PairIndex(_checked_arrays(arrays), header)
    except ValueError as err:
        raise _damaged(path, str(err)) from None
    # Hashing and checking touched every page; let them go, so a rank holds only what it reads
    # (the pages stay in the page cache, shared by every process that maps the file).
    mapped.madvise(mmap.MADV_DONTNEED)
    return index


def _damaged(path: Path, what: str) -> CaclError:
    return CaclError(
        f"{path}: {what} (damaged or not written by cacl); rerun cacl "
        "extract-pairs, which rebuilds it from the manifest"
    )


def _checked_header(header) -> dict:
    """The header's fields, of the types and within the bounds a reader relies on."""
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    stamp, data_bytes = header.get("manifest"), header.get("data_bytes")
    if not (isinstance(stamp, list) and len(stamp) == 2 and all(_is_int(v) for v in stamp)):
        raise ValueError("its header's 'manifest' is not a [size, time] stamp")
    if not (_is_int(data_bytes) and data_bytes >= 0 and isinstance(header.get("sha256"), str)):
        raise ValueError("its header's 'data_bytes' or 'sha256' is missing or of the wrong type")
    layout = header.get("arrays")
    if not (isinstance(layout, dict) and layout.keys() in (DTYPES.keys(), DTYPES.keys() - CHECKS)):
        raise ValueError(f"its header's 'arrays' must name exactly {', '.join(DTYPES)}")
    for name, entry in layout.items():
        _check_entry(name, entry, data_bytes)
    return header


def _check_entry(name: str, entry, data_bytes: int) -> None:
    """One array's ``[dtype, [length], offset]``: its own dtype, inside the file's data."""
    shaped = isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], list)
    if not (
        shaped
        and isinstance(entry[0], str)
        and len(entry[1]) == 1
        and _is_int(entry[1][0])
        and _is_int(entry[2])
    ):
        raise ValueError(f"array '{name}' is not [dtype, [length], offset]")
    try:
        dtype = np.dtype(entry[0])
    except TypeError:
        dtype = None
    if dtype != np.dtype(DTYPES[name]):
        raise ValueError(f"array '{name}' has dtype {entry[0]!r}, not {np.dtype(DTYPES[name])}")
    (length,), offset = entry[1], entry[2]
    if length < 0 or offset < 0 or offset + length * dtype.itemsize > data_bytes:
        raise ValueError(f"array '{name}' lies outside the file's data")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _checked_arrays(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays agree with each other: every draw and every clip lies within the frames and
    draws, every frame within the files, every string within its blob; every file is a name
    relative to the folder and inside it."""
    frames = len(arrays["frame_file"])
    if (
        len(
            {
                len(arrays[name])
                for name in ("frame_file", "frame_offset", "frame_size", "frame_bytes", "frame_crc")
            }
        )
        > 1
    ):
        raise ValueError("its frame arrays differ in length")
    if frames and not (0 <= arrays["frame_crc"].min() and arrays["frame_crc"].max() < 2**32):
        raise ValueError("a frame's CRC-32 is out of range")
    _ragged(arrays["draw_start"], frames, "draw_start", least=2)  # two frames make a pair
    _ragged(arrays["clip_draw_start"], len(arrays["draw_start"]) - 1, "clip_draw_start", least=1)
    for name in ("file", "clip", "source"):
        _ragged(arrays[f"{name}_starts"], len(arrays[f"{name}_blob"]), f"{name}_starts")
    clips = len(arrays["clip_starts"]) - 1
    if not len(arrays["source_starts"]) - 1 == len(arrays["clip_draw_start"]) - 1 == clips:
        raise ValueError("it holds more clip ids, sources or clip draws than clips")
    files = len(arrays["file_starts"]) - 1
    if frames and not (0 <= arrays["frame_file"].min() and arrays["frame_file"].max() < files):
        raise ValueError("a frame names a file the index does not hold")
    if frames and (arrays["frame_offset"].min() < 0 or arrays["frame_size"].min() < -1):
        raise ValueError("a frame has a negative offset or size")
    _names_inside(Strings(arrays["file_blob"], arrays["file_starts"]))
    return arrays


def _ragged(starts: np.ndarray, total: int, name: str, least: int = 0) -> None:
    """``starts`` runs from 0 to ``total`` in steps of at least ``least``."""
    if len(starts) < 1 or starts[0] != 0 or starts[-1] != total:
        raise ValueError(f"'{name}' does not run from 0 to {total}")
    if len(starts) > 1 and np.diff(starts).min() < least:
        raise ValueError(f"'{name}' goes backwards or holds an item too short")


def _names_inside(files: Strings) -> None:
    """Every file a relative name below the folder: no absolute path, no '..', no NUL. The
    blob is searched at once; only names it flags are decoded."""
    blob = files.blob.tobytes()
    if b"\0" in blob:
        raise ValueError("a file name holds a NUL byte")
    firsts = files.blob[files.starts[:-1][np.diff(files.starts) > 0]]
    if len(files) and (np.diff(files.starts).min() == 0 or (firsts == ord("/")).any()):
        raise ValueError("a file name is empty or an absolute path")
    if b".." in blob:
        for i in range(len(files)):
            if ".." in Path(files[i]).parts:
                raise ValueError(f"file '{files[i]}' lies outside the folder")
