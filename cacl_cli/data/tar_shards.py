"""Pairs in tar shards (WebDataset's layout): a few large files instead of millions of JPEGs.

Cluster filesystems serve small random files slowly; 64 GPUs reading one JPEG per frame would
ask for tens of thousands of opens a second. A shard holds whole clips, one after another:
``<key>.f0.jpg``, ``<key>.f1.jpg`` ... then ``<key>.json`` (the clip's record). WebDataset
splits a member's name at its first dot into sample key and field, so keys hold no dot:
``member_key`` maps a clip id (which may hold dots) to one, reversibly.

One process writes a shard (the extraction's parent; its workers only decode and encode). After
each clip the shard is flushed to disk and only then is the clip's record written, so every
recorded member is whole. A killed writer leaves its last shard without the end-of-archive
blocks and perhaps a clip cut short; ``repair`` cuts it back to the last recorded clip and ends
it, so GNU tar, Python's tarfile and WebDataset read every shard to the end.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

from cacl_cli.files import open_for_writing, open_regular

BLOCK, RECORD = 512, tarfile.RECORDSIZE  # tar's block and its 10 KiB record


def member_key(clip: str) -> str:
    """A dot-free, reversible sample key: '%' -> '%25', '.' -> '%2E'."""
    return clip.replace("%", "%25").replace(".", "%2E")


def shard_name(tag: str, number: int) -> str:
    return f"pairs-{tag}{number:06d}.tar"


def shard_files(out: Path, tag: str) -> list[Path]:
    """This writer's shards (``tag``: '' unsharded, '2of8-' for shard 2 of 8), in order."""
    pattern = re.compile(re.escape(f"pairs-{tag}") + r"(\d{6})\.tar")
    return sorted(p for p in out.glob(f"pairs-{tag}*.tar") if pattern.fullmatch(p.name))


class ShardWriter:
    """Appends clips to ``pairs-<tag>NNNNNN.tar``, starting a new shard past ``limit`` bytes."""

    def __init__(self, out: Path, tag: str, limit: int) -> None:
        self.out, self.tag, self.limit = out, tag, limit
        existing = shard_files(out, tag)
        self.number = int(existing[-1].stem[-6:]) + 1 if existing else 0  # never append
        self.tar: tarfile.TarFile | None = None

    def add_clip(self, record: dict, jpegs: list[bytes]) -> dict:
        """Write the clip's frames and its JSON; returns the record with ``tar`` and
        ``members`` (name -> [data offset, size]); the frames are then on disk."""
        if self.tar is None:
            self.path = self.out / shard_name(self.tag, self.number)
            self.tar = tarfile.open(
                fileobj=open_for_writing(self.path, "wb"), mode="w", format=tarfile.PAX_FORMAT
            )
            self.number += 1
        key = member_key(record["clip"])
        names = [f"{key}.f{n}.jpg" for n in range(len(jpegs))]
        per_draw = len(record["indices"][0])
        groups = [names[i : i + per_draw] for i in range(0, len(names), per_draw)]
        record = record | {"frames": groups, "tar": self.path.name, "members": {}}
        for name, data in zip(names, jpegs):
            record["members"][name] = [self._append(name, data), len(data)]
        sample = {k: record[k] for k in ("clip", "source", "frames", "indices", "fps", "size")}
        self._append(f"{key}.json", json.dumps(sample).encode())
        self.tar.fileobj.flush()
        os.fsync(self.tar.fileobj.fileno())
        if self.tar.offset >= self.limit:
            self.close()
        return record

    def _append(self, name: str, data: bytes) -> int:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0  # the same bytes on every run
        self.tar.addfile(info, io.BytesIO(data))
        return self.tar.offset - _padded(len(data))  # where the data began

    def close(self) -> None:
        if self.tar is not None:
            self.tar.close()  # the end-of-archive blocks
            self.tar = None

    def abandon(self) -> None:
        """After a failed write: leave the shard unended, as a kill would (the next run's
        ``repair`` cuts it back to its recorded clips); the next clip starts a new one."""
        if self.tar is not None:
            with contextlib.suppress(OSError):
                self.tar.fileobj.close()
            self.tar = None


def is_ended(path: Path) -> bool:
    """Whether a shard was closed: whole records, the last two blocks zero. No member of ours
    ends in 1024 zero bytes (a JPEG ends in FF D9, a JSON in '}'), so a cut shard never passes."""
    with open_regular(path, "a tar shard extract-pairs wrote") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 2 * BLOCK or size % RECORD:
            return False
        fh.seek(size - 2 * BLOCK)
        return not fh.read().strip(b"\0")


def repair(path: Path, recorded: set[str]) -> None:
    """Cut a killed writer's shard after its last whole clip in ``recorded`` and end it."""
    size, end = path.stat().st_size, 0
    try:
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                whole = member.offset_data + member.size <= size
                key, _, field = member.name.partition(".")
                if not whole:
                    break
                if field == "json" and _clip_of(key) in recorded:
                    end = member.offset_data + _padded(member.size)
    except (tarfile.TarError, EOFError, OSError):
        pass  # a header cut short: what came before it stands
    with open_for_writing(path, "r+b") as fh:
        fh.truncate(end)
        fh.seek(end)
        closing = 2 * BLOCK + (-(end + 2 * BLOCK) % RECORD)
        fh.write(b"\0" * closing)
        fh.flush()
        os.fsync(fh.fileno())


def _padded(size: int) -> int:
    """A member's data as tar stores it: whole blocks."""
    return -(-size // BLOCK) * BLOCK


def _clip_of(key: str) -> str:
    return key.replace("%2E", ".").replace("%25", "%")
