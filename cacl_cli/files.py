"""Atomic file writes: a reader (or a resumed run) never sees a half-written file.

Everything is written to a temporary name in the target folder, flushed to disk, then renamed over
the final name, which POSIX makes atomic.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from cacl_cli.errors import CaclError, RunFailed
from cacl_cli.run_folder import LOCK


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


# mkstemp makes owner-only files; the final file gets what open() would have given it.
FILE_MODE = 0o666 & ~_umask()


def refuse_links(path: Path) -> None:
    """A folder link planted inside an output folder would carry a write to ``path`` elsewhere,
    over someone's files: refuse it, naming the link. An output folder is one a command has
    claimed, which its lock file marks on disk (``outputs.claimed``), so every writer, in any
    process, finds it from the path alone. The output folder itself may be a link."""
    links_below: list[Path] = []  # the links met so far on the way up from ``path``
    for folder in Path(path).absolute().parents:
        if links_below and (folder / LOCK).is_file():
            raise RunFailed(
                f"{links_below[-1]} is a link inside {folder}; cacl writes no file through a "
                "link: remove it, or choose another --out"
            )
        if folder.is_symlink():
            links_below.append(folder)


NAME_MAX = 255  # bytes in one file name on the file systems cacl writes to


def temp_prefix(path: Path) -> str:
    """The start of ``path``'s temporary names: ``.NAME.``, or for a name too long to take the
    random part and ``.tmp`` within the name limit, a digest of it (stale ones are found by
    the same prefix)."""
    name = os.fsencode(path.name)
    if len(name) + 16 <= NAME_MAX:
        return f".{path.name}."
    return f".{hashlib.sha1(name).hexdigest()}."


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``."""
    path = Path(path)
    refuse_links(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except OSError as err:
        raise named(err, path) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` where it names no file: a failed write() says only "No space
    left on device", and the user must learn which file it was."""
    if err.filename is not None or err.errno is None:
        return err
    return type(err)(err.errno, err.strerror, str(path))


def open_for_writing(path: Path, mode: str = "ab") -> "NamedFile":
    """The one way a file is opened to write in place (a lock, a log appended to, a shard made
    or repaired): never through a link (the file's own or a folder's on the way), never a FIFO
    or a device, which would block or swallow the writes; created where absent. ``mode``:
    ``ab``/``a`` append, ``wb`` truncate, ``r+b`` read and write."""
    refuse_links(path)
    flags = {
        "ab": os.O_WRONLY | os.O_APPEND,
        "a": os.O_WRONLY | os.O_APPEND,
        "wb": os.O_WRONLY | os.O_TRUNC,
        "r+b": os.O_RDWR,
    }[mode]
    try:  # O_NONBLOCK: a FIFO without a reader fails at once instead of blocking
        fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, FILE_MODE)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise CaclError(
                f"{path} is a link; cacl writes no file through a link: remove it, "
                "or choose another --out"
            ) from None
        if err.errno in (errno.ENXIO, errno.EISDIR):
            raise CaclError(
                f"{path} is not a regular file (a FIFO or a folder); remove it, or "
                "choose another --out"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CaclError(
            f"{path} is not a regular file (a FIFO or a device); remove it, or choose another --out"
        )
    os.set_blocking(fd, True)
    return NamedFile(os.fdopen(fd, mode), path)


class NamedFile:
    """A file from ``open_for_writing`` whose failed writes name it: a ``write()`` that fails
    for a full disk carries no file name of its own, and the user must learn which file."""

    def __init__(self, fh: IO, path: Path) -> None:
        self._fh, self._path = fh, path

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> "NamedFile":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, data: Any) -> int:
        return self._named(self._fh.write, data)

    def flush(self) -> None:
        self._named(self._fh.flush)

    def close(self) -> None:
        self._named(self._fh.close)

    def _named(self, call: Callable, *args: Any) -> Any:
        try:
            return call(*args)
        except OSError as err:
            raise named(err, self._path) from None


def write_atomic(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(fh)`` on a temporary binary file, then move it to ``path``."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        write(fh)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda fh: fh.write(text.encode()))


def files_under(root: Path) -> list[Path]:
    """Every name under the folder ``root`` at any depth that is not a folder (files, links to
    files, dangling links, FIFOs: callers pick), through links to folders too: a collection
    assembled from links is read as the user sees it (``Path.rglob`` skips linked folders). A
    folder met twice, through a link loop or two links to it, is read once (under the first of
    its paths in name order), so a loop ends."""
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for folder, subfolders, names in os.walk(root, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:  # gone or unreadable since it was listed: nothing to read in it
            subfolders[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            subfolders[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        subfolders.sort()  # the same path wins on every machine, whatever the listing order
        found += [Path(folder, name) for name in names]
    return found


def present(path: Path) -> bool:
    """Whether anything stands at ``path``: a file, but also a FIFO or a dangling link, which
    the readers below refuse by name where ``is_file()`` would pass them over in silence."""
    return os.path.lexists(path)


def regular_descriptor(path: Path, what: str) -> int:
    """The one way an input file is opened: a descriptor of a regular file, for reading. A FIFO
    (which would block), a device, a folder, a dangling link or an unreadable file is a one-line
    error naming it and saying what was expected."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once, then is refused
    except OSError as err:
        raise CaclError(f"{path}: {(err.strerror or 'unreadable').lower()}; give {what}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise CaclError(f"{path} is not a regular file (a FIFO, device or folder?); give {what}")
    return fd


@contextlib.contextmanager
def open_regular(path: Path, what: str) -> Iterator[IO[bytes]]:
    """``regular_descriptor`` as a binary file object."""
    with os.fdopen(regular_descriptor(path, what), "rb") as fh:
        yield fh


def read_bytes(path: Path, what: str) -> bytes:
    """A regular file's bytes (``open_regular``)."""
    with open_regular(path, what) as fh:
        try:
            return fh.read()
        except OSError as err:
            raise CaclError(f"{path}: {err.strerror}; give {what}") from None


def read_text(path: Path, what: str = "a text file") -> str:
    """A UTF-8 file's text; a binary or mis-encoded one is a one-line error naming it."""
    try:
        return read_bytes(path, what).decode("utf-8")
    except UnicodeDecodeError:
        raise CaclError(f"{path} is not UTF-8 text; it should be {what}") from None


def parse_json(data: str | bytes, where: str) -> Any:
    """JSON text as Python values; not JSON, or nested past what the parser can descend (a
    hostile file a few hundred thousand levels deep), is a ValueError naming ``where``."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError(f"{where} is nested too deep to be a file cacl wrote") from None
    except ValueError:
        raise ValueError(f"{where} is not JSON") from None


def remove_stale_temps(folder: Path, recursive: bool = False) -> None:
    """Delete temporary files a killed writer left behind (their final names were never made)."""
    if folder.is_dir():
        for stale in (folder.rglob if recursive else folder.glob)(".*.tmp"):
            stale.unlink(missing_ok=True)
