"""Progress that reaches a log file: plain lines when stdout is not a terminal."""

import re

from rich.console import Console

from cacl_cli.progress import progress_bar
from tests.conftest import TINY, run_cacl


def test_pretrain_into_a_log_prints_progress_lines(tmp_path):
    args = []
    for item in TINY + ["schedule.steps=6"]:
        args += ["--set", item]
    done = run_cacl("pretrain", "--out", tmp_path / "r", *args, env={"CACL_PROGRESS_SECONDS": "0"})
    assert done.returncode == 0, done.stderr
    counts = [int(m) for m in re.findall(r"^pretrain (\d+)/6 loss", done.stdout, re.M)]
    assert counts == sorted(counts) and counts[-1] == 6 and len(counts) >= 6
    assert re.search(r"^pretrain 6/6 loss \S+ [\d.]+/s elapsed \d:\d\d:\d\d eta", done.stdout, re.M)
    assert "health: " in done.stdout and f"next: cacl probe --checkpoint {tmp_path / 'r'}" in (
        done.stdout.replace("\n", " ")
    )


def advance_a_bar(total, terminal):
    with progress_bar(Console(force_terminal=terminal, width=200), "work") as bar:
        task = bar.add_task("work", total=total, status="")
        for _ in range(total):
            bar.advance(task)


def test_lines_are_spaced_by_the_interval(monkeypatch, capsys):
    monkeypatch.setenv("CACL_PROGRESS_SECONDS", "3600")
    advance_a_bar(50, terminal=False)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("work ")]
    # the first update and the finished task print; the 48 between fall inside the interval
    assert [line.split()[1] for line in lines][:2] == ["1/50", "50/50"]


def test_a_terminal_gets_the_bar_not_lines(monkeypatch, capsys):
    monkeypatch.setenv("CACL_PROGRESS_SECONDS", "0")
    advance_a_bar(3, terminal=True)
    assert not re.search(r"^work \d+/3 ", capsys.readouterr().out, re.M)


def test_off_a_terminal_no_bar_line_is_left_at_the_end(monkeypatch, capsys):
    monkeypatch.setenv("CACL_PROGRESS_SECONDS", "3600")
    advance_a_bar(4, terminal=False)
    out = capsys.readouterr().out
    assert "━" not in out and "work 4/4" in out  # the plain line, not rich's last frame
    with progress_bar(Console(force_terminal=False, width=200), "idle") as bar:
        bar.add_task("idle", total=0, status="")  # "nothing to do": no work, no bar
    assert "━" not in capsys.readouterr().out
