"""A run's metrics log: ``metrics.jsonl``, the same records as rows of ``metrics.csv``, and with
the ``tensorboard`` extra as event files (``run_folder.py`` says where each lies)."""

from __future__ import annotations

import csv
import io
import json
import math

from cacl_cli.files import (
    open_for_writing,
    open_regular,
    parse_json,
    present,
    read_bytes,
    write_text_atomic,
)
from cacl_cli.run_folder import RunFolder


class MetricsLog:
    """``metrics.jsonl``: one JSON record per logged step, and the same records as rows of
    ``metrics.csv`` beside it (columns fixed by the run's first record). Each line is appended
    with one write; a resume drops the records past its step, and any line a kill tore.

    With ``events`` and the ``tensorboard`` extra installed, every number of a record also goes
    to TensorBoard event files in ``tensorboard/`` beside them (``tensorboard --logdir RUN``);
    without the extra, ``note`` says once that there are none.
    """

    def __init__(self, run: RunFolder, events: bool = False, note=print) -> None:
        self.path, self.csv_path, self.events_dir = run.metrics, run.metrics_table, run.events
        self.note = note
        self.events, self.writer, self.resumed_at = events, None, 0
        self.header: list[str] | None = None  # metrics.csv's columns, read once

    def truncate_after(self, step: int) -> None:
        self.resumed_at = step
        if present(self.path):
            text = self._log_text()
            kept = [line for line in text.splitlines() if _step_of(line) <= step]
            write_text_atomic(self.path, "".join(line + "\n" for line in kept))
            records = [parse_json(line, str(self.path)) for line in kept]
            columns = self._columns() or (list(records[0]) if records else [])
            rows = [_csv_line(columns)] + [_csv_line(_row(r, columns)) for r in records]
            write_text_atomic(self.csv_path, "".join(rows) if columns else "")
            self.header = columns

    def write(self, record: dict) -> None:
        with open_for_writing(self.path, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        columns = self._columns()
        with open_for_writing(self.csv_path, "a") as fh:
            if not columns:
                columns = self.header = list(record)
                fh.write(_csv_line(columns))
            fh.write(_csv_line(_row(record, columns)))
        if self.events:
            self._write_events(record)

    def _write_events(self, record: dict) -> None:
        if self.writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.events = False
                self.note(
                    "note: no TensorBoard event files (the tensorboard extra is not installed: "
                    "pip install 'cacl-video[tensorboard]'); metrics.jsonl and metrics.csv as usual"
                )
                return
            # A resumed run drops the events past its step, as it drops the records.
            purge = self.resumed_at + 1 if self.resumed_at else None
            self.writer = SummaryWriter(str(self.events_dir), purge_step=purge)
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, record["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _columns(self) -> list[str]:
        if self.header is None and present(self.csv_path):
            with open_regular(self.csv_path, "the run's metrics table") as fh:
                first = fh.readline().decode(errors="replace")  # the columns, not the rows
            header = next(csv.reader(io.StringIO(first)), [])
            self.header = header if all(c.isprintable() for c in "".join(header)) else None
        return self.header or []

    def records(self) -> list[dict]:
        if not present(self.path):
            return []
        lines = self._log_text().splitlines()
        return [parse_json(line, str(self.path)) for line in lines if math.isfinite(_step_of(line))]

    def _log_text(self) -> str:
        # Undecodable bytes (a damaged disk) become lines no step can be read from: dropped.
        return read_bytes(self.path, "the run's metrics log").decode(errors="replace")


def _row(record: dict, columns: list[str]) -> list:
    return [record.get(c, "") for c in columns]  # a key the first record lacked stays in the JSONL


def _csv_line(values: list) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(values)
    return buffer.getvalue()


def _step_of(line: str) -> float:
    """A record's step; a line torn by a kill during its append counts as never written."""
    try:
        step = parse_json(line, "a metrics record")["step"]
    except (ValueError, KeyError, TypeError):
        return math.inf
    return step if isinstance(step, int) and not isinstance(step, bool) else math.inf
