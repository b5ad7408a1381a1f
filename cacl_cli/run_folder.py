"""A pretrain run's folder: the one place its layout is spelled.

    RUN/
      .cacl.lock                   held while a command writes here (outputs.py)
      config.yaml                  the resolved config the run trains with
      metrics.jsonl, metrics.csv   one record every run.log_every steps (metrics_log.py)
      tensorboard/                 the same records as event files, with the tensorboard extra
      checkpoints/step-NNNNNNN.pt  the newest run.keep_checkpoints of them (checkpoint.py)
      checkpoints/latest           names the newest, written after it
      export/                      cacl export's default output

An evaluation's output folder holds a ``config.yaml`` too, and its scores in ``results.json``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.yaml"  # the resolved config of a run or an evaluation
RESULTS = "results.json"  # an evaluation's scores
LOCK = ".cacl.lock"  # kept: removing it would let two processes lock two files
CHECKPOINTS = "checkpoints"


@dataclass(frozen=True)
class RunFolder:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def metrics_table(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def events(self) -> Path:
        return self.root / "tensorboard"

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def latest(self) -> Path:
        return self.checkpoints / "latest"

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def lock(self) -> Path:
        return self.root / LOCK

    def checkpoint(self, step: int) -> Path:
        return self.checkpoints / checkpoint_name(step)

    def checkpoint_files(self) -> list[Path]:
        """The run's checkpoints, oldest first."""
        folder = self.checkpoints
        steps = (
            {p: checkpoint_step(p.name) for p in folder.glob("step-*.pt")}
            if (folder.is_dir())
            else {}
        )
        return sorted((p for p, step in steps.items() if step is not None), key=steps.get)

    def is_run(self) -> bool:
        """Whether the folder holds a pretrain run (checkpoints or a metrics log)."""
        return self.checkpoints.is_dir() or self.metrics.is_file()

    @classmethod
    def holding(cls, checkpoint: Path) -> RunFolder | None:
        """The run a checkpoint file lies in (``RUN/checkpoints/step-N.pt``), if any."""
        checkpoint = Path(checkpoint)
        run = cls(checkpoint.parent.parent)
        return run if checkpoint.parent.name == CHECKPOINTS and run.is_run() else None


def judged_name(weights: Path | None) -> str:
    """What an evaluation judged, as a folder name: a run folder's name, a checkpoint's run and
    step, a weights file's stem, or ``random-init`` (None)."""
    if weights is None:
        return "random-init"
    path = Path(weights).resolve()
    if path.is_dir():
        return path.name
    run = RunFolder.holding(path)
    return f"{run.root.name}-{path.stem}" if run is not None else path.stem


def checkpoint_name(step: int) -> str:
    return f"step-{step:07d}.pt"


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint file name (``step-NNNNNNN.pt``), None for any other name."""
    match = re.fullmatch(r"step-(\d+)\.pt", name)
    return int(match.group(1)) if match else None
