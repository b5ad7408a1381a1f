"""The one place that knows how to tell a user something went wrong.

Commands raise :class:`CaclError` with a sentence that names the file or key at fault and says what
to do. :func:`report_errors` turns it into one line on stderr and exit code 2; with ``CACL_DEBUG=1``
the traceback is shown instead.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

EXIT_USER_ERROR = 2


class CaclError(Exception):
    """A problem the user can fix: bad preset, bad path, bad data layout, diverged run."""


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
        _fail(str(err))
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as err:
        if debug_enabled():
            raise
        _fail(f"{err.strerror or err}: {err.filename}")
    except OSError as err:
        if debug_enabled() or err.errno is None:
            raise
        _fail(f"{err.strerror}: {err.filename or ''}".rstrip(": "))


def _fail(message: str) -> None:
    first_line = message.strip().splitlines()[0] if message.strip() else "failed"
    print(f"error: {first_line}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)
