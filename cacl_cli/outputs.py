"""Where a command writes, by one rule for every command.

- Without ``--out`` each run gets a folder of its own, ``runs/<command>-<preset>-<date>-<time>``,
  so a second probe never replaces the first one's results.
- An ``--out`` that already holds files is refused, unless the command continues work there
  (``pretrain --resume``, ``extract-pairs``, which skips the clips already done) or the user
  says ``--overwrite``. No command but ``pretrain`` ever writes into a pretrain run's folder
  or below it (``RUN/export`` is export's own), and no ``--out`` overlaps the command's inputs.
- While a command writes, its folder is locked, so two processes never interleave their files in
  one folder. The lock is a POSIX record lock: the kernel drops it when the process dies, and
  the processes it forks (data loader workers) do not hold it, so a requeued run that starts
  while a killed run's orphaned workers are still exiting is not refused.
- A command that fails before writing anything leaves no folder behind.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from pathlib import Path
from typing import Iterable, Iterator

from cacl_cli.distributed import launch_place
from cacl_cli.errors import CaclError
from cacl_cli.files import open_for_writing
from cacl_cli.run_folder import LOCK, RESULTS, RunFolder

RUNS = Path("runs")


def default_folder(command: str, preset: str, subject: str | None = None) -> Path:
    """A new folder under runs/ named after what was evaluated (``subject``: a run, a weights
    file, random-init), the protocol (the preset, led by the command unless its name already
    is) and the time."""
    if launch_place().world_size > 1:  # each rank would read its own clock
        raise CaclError("under torchrun give --out RUN_FOLDER: every rank must name the same one")
    protocol = Path(preset).stem
    protocol = protocol if protocol.startswith(command) else f"{command}-{protocol}"
    stem = "-".join(p for p in (subject, protocol, time.strftime("%Y%m%d-%H%M%S")) if p)
    folder, n = RUNS / stem, 1
    while folder.exists():
        n += 1
        folder = RUNS / f"{stem}-{n}"
    return folder


def real_path(path: Path) -> Path:
    """``path`` with every link resolved (it need not exist)."""
    return Path(os.path.realpath(path))


def _pretrain_run_above(folder: Path, command: str) -> Path | None:
    """The pretrain run ``folder`` is or lies in, if any (``RUN/export`` is export's own). A
    folder above counts only with cacl's lock file in it: a project folder that merely holds a
    ``checkpoints/`` of its own is no run."""
    real = real_path(folder)
    for above in (real, *real.parents):
        run = RunFolder(above)
        ours = above == real or run.lock.exists()
        own_export = command == "export" and real == run.export
        if ours and run.is_run() and not own_export:
            return above
    return None


def check_apart(folder: Path, inputs: Iterable[Path | None]) -> None:
    """Refuse an ``--out`` that is, holds or lies inside one of the command's inputs, so no
    written file can land on them (links resolved, the output may not exist yet)."""
    out = real_path(folder)
    for given in filter(None, inputs):
        path = real_path(given)
        if out.is_relative_to(path) or path.is_relative_to(out):
            where = "is" if out == path else "lies inside" if out.is_relative_to(path) else "holds"
            raise CaclError(
                f"--out {folder} {where} the input {given}; choose an --out apart from what "
                "the command reads"
            )


def _contents(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith(LOCK))


def check_folder(
    folder: Path,
    command: str,
    continues: bool = False,
    named: bool = True,
    inputs: Iterable[Path | None] = (),
) -> None:
    """Refuse an output folder the command must not write into (see the module's rule).

    ``continues``: the command adds to what is there (``pretrain --resume``, ``extract-pairs``,
    or ``--overwrite``). ``named``: the user gave ``--out`` (not a command's fixed default).
    ``inputs``: the files and folders the command reads, which the folder must keep apart from.
    """
    if folder.exists() and not folder.is_dir():
        raise CaclError(f"--out {folder} is a file; give a folder")
    run = None if command == "pretrain" else _pretrain_run_above(folder, command)
    if run is not None:
        where = "holds" if run == real_path(folder) else f"lies inside {run},"
        raise CaclError(
            f"--out {folder} {where} a pretrain run; {command} never writes into one "
            f"(pass it as --checkpoint and choose another --out, or leave --out out)"
        )
    check_apart(folder, inputs)
    if command == "pretrain" and (folder / RESULTS).is_file():
        raise CaclError(
            f"--out {folder} holds an evaluation's results.json, not a pretrain run; "
            "give pretrain a folder of its own"
        )
    found = _contents(folder)
    if found and not continues:
        hint = "--resume to continue it" if command == "pretrain" else "--overwrite to replace it"
        raise CaclError(
            f"--out {folder} already holds {', '.join(found[:3])}{' ...' if len(found) > 3 else ''}"
            f"; pass {hint}, or "
            + ("leave --out out for a new folder" if named else "--out FOLDER for another")
        )


@contextlib.contextmanager
def claimed(
    folder: Path,
    command: str,
    continues: bool = False,
    named: bool = True,
    part: str = "",
    inputs: Iterable[Path | None] = (),
) -> Iterator[Path]:
    """Check ``folder``, lock it for this process, and yield it.

    Under torchrun only rank 0 writes, so only rank 0 checks and locks. A folder this call
    created and nothing was written into is removed again on the way out. ``part`` locks a
    share of the folder instead (an extraction shard), so the other shares may run at once.
    """
    if not launch_place().is_main:  # rank 0 checks the folder and writes into it
        yield folder
        return
    check_folder(folder, command, continues, named, inputs)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as locks:
        try:
            # The folder's lock first, then its part's: shared by the parts working at once,
            # held alone by a command that writes the whole folder (docs/reliability.md).
            _lock(locks, folder, LOCK, shared=bool(part), what=folder)
            if part:
                _lock(
                    locks,
                    folder,
                    f"{LOCK}.{part}",
                    shared=False,
                    what=f"{folder} (its {part.replace('-', ' ')})",
                )
            yield folder
        finally:
            if created and not _contents(folder):
                for name in (LOCK, f"{LOCK}.{part}"):
                    (folder / name).unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _lock(locks: contextlib.ExitStack, folder: Path, name: str, shared: bool, what) -> None:
    """A POSIX record lock on ``folder/name``, held until ``locks`` closes; taken by another
    process in a way that excludes this one, a one-line error."""
    lock = locks.enter_context(open_for_writing(folder / name, "r+b"))
    try:
        fcntl.lockf(lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        raise CaclError(
            f"{what} is in use by another cacl process; wait for it to finish or "
            "choose another --out"
        ) from None
