"""The one place that knows how to tell a user something went wrong.

Commands raise :class:`CaclError` with a sentence that names the file or key at fault and says what
to do. :func:`report_errors` turns it into one line on stderr; with ``CACL_DEBUG=1`` the traceback
is shown instead. Exit codes (docs/reliability.md):

- 2: the request was wrong (option, key, path, file): :class:`CaclError`;
- 1: the run failed (diverged, disk full, a worker died): :class:`RunFailed`;
- 128 + n: stopped by signal n after saving its state: :class:`Interrupted`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Iterator

EXIT_USER_ERROR = 2
EXIT_RUN_FAILED = 1
# OS errors that mean the machine failed the run, not that the user asked for something wrong.
RUN_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM}


class CaclError(Exception):
    """A problem the user can fix: bad preset, bad path, bad data layout, diverged run."""


class RunFailed(CaclError):
    """The request was fine but the run could not go on: diverged, disk full, a worker died."""


class Interrupted(Exception):
    """Stopped by a signal after saving its state; exits with 128 + the signal number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


def debug_enabled() -> bool:
    return os.environ.get("CACL_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def report_errors() -> Iterator[None]:
    """Turn :class:`CaclError` (and a few OS errors) into one line and exit code 2."""
    try:
        yield
    except Interrupted as err:
        print(str(err), file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except CaclError as err:
        if debug_enabled():
            raise
        _fail(str(err), EXIT_RUN_FAILED if isinstance(err, RunFailed) else EXIT_USER_ERROR)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        if debug_enabled():
            raise
        _fail(f"{err.strerror or err}: {err.filename}")
    except OSError as err:
        if debug_enabled() or err.errno is None:
            raise
        code = EXIT_RUN_FAILED if err.errno in RUN_ERRNOS else EXIT_USER_ERROR
        _fail(f"{err.strerror}: {err.filename or ''}".rstrip(": "), code)


def _fail(message: str, code: int = EXIT_USER_ERROR) -> None:
    """One line: a control character in the message (a newline in a user's file or sequence
    name) is shown escaped, so the line is whole and the name reads as it is."""
    shown = "".join(
        c if c.isprintable() or "\udc80" <= c <= "\udcff" else repr(c)[1:-1]
        for c in message.strip()
    )  # undecodable bytes print as bytes
    print(f"error: {shown or 'failed'}", file=sys.stderr)
    raise SystemExit(code)
