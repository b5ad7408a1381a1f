"""errors.py: what a user sees when something goes wrong: one line, and the exit code that says
whose fault it was."""

import errno

import pytest

from cacl_cli.errors import CaclError, Interrupted, RunFailed, report_errors


def failing(error):
    with report_errors():
        raise error


@pytest.mark.parametrize(
    "error,code,line",
    [
        (CaclError("key 'x' is unknown"), 2, "error: key 'x' is unknown"),
        (
            RunFailed("step 9: loss term 'cycle' is nan"),
            1,
            "error: step 9: loss term 'cycle' is nan",
        ),
        (
            OSError(errno.ENOSPC, "No space left on device", "run/metrics.jsonl"),
            1,
            "error: No space left on device: run/metrics.jsonl",
        ),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "a.pt"),
            2,
            "error: No such file or directory: a.pt",
        ),
        (
            CaclError("sequence black\nswan: not in davis"),
            2,
            "error: sequence black\\nswan: not in davis",
        ),  # the name whole, the line one
    ],
)
def test_each_failure_is_one_line_with_the_exit_code_of_whose_fault_it_was(
    capsys, monkeypatch, error, code, line
):
    monkeypatch.delenv("CACL_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped:
        failing(error)
    assert stopped.value.code == code
    assert capsys.readouterr().err.splitlines() == [line]


def test_a_signal_stop_exits_with_128_plus_the_signal_and_says_how_to_resume(capsys):
    with pytest.raises(SystemExit) as stopped:
        failing(Interrupted("stopped by SIGTERM after step 3; resume with --resume", 15))
    assert stopped.value.code == 143 and "resume with --resume" in capsys.readouterr().err


def test_debug_mode_shows_the_exception_itself(monkeypatch):
    monkeypatch.setenv("CACL_DEBUG", "1")
    with pytest.raises(CaclError, match="unknown"):
        failing(CaclError("unknown"))
