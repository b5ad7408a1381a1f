"""Checkpoints: their format, saving and finding them in a run folder (``run_folder.py``), and
restoring a run from one.

The ``latest`` pointer is written after the checkpoint it names. Checkpoints are written to a
temporary name and renamed, and read with ``weights_only=True``, so a checkpoint can never run code
and a killed run never leaves a half-written one behind.

A checkpoint is a dict: ``format`` (:data:`FORMAT`), ``step``, ``model`` (online and momentum
networks and the queues), ``optimizer``, ``scaler``, ``config`` (the resolved config as a plain
tree) and ``rng``.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cacl_cli.config import Config, from_saved
from cacl_cli.errors import CaclError
from cacl_cli.files import present, read_bytes, write_atomic, write_text_atomic
from cacl_cli.run_folder import RunFolder

FORMAT = 1  # the layout below; a newer file is refused rather than misread


def save_checkpoint(run_dir: Path, step: int, state: dict[str, Any], keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``step``, move the pointer, prune old ones."""
    run = RunFolder(Path(run_dir))
    path = run.checkpoint(step)
    # Serialised in memory first: written by torch, a full disk surfaces as a RuntimeError from
    # its C++ writer (then another from its cleanup); written here it is a plain OSError.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, lambda fh: fh.write(buffer.getbuffer()))
    write_text_atomic(run.latest, path.name + "\n")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints, oldest first."""
    return RunFolder(Path(run_dir)).checkpoint_files()


def read_tensors(path: Path, what: str, map_location: str | torch.device = "cpu") -> Any:
    """The one place a tensor file is read: ``torch.load`` with ``weights_only`` (no code runs),
    anything unreadable a one-line error that names the file as ``what``."""
    return read_tensors_once(path, what, map_location)[0]


def read_tensors_once(
    path: Path, what: str, map_location: str | torch.device = "cpu"
) -> tuple[Any, str]:
    """``read_tensors`` and the file's SHA-256, from one read of its bytes."""
    data = read_bytes(path, f"a {what}")
    try:
        loaded = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except CaclError:
        raise
    except RecursionError:
        raise CaclError(f"{path} is nested too deep to be a {what} cacl wrote") from None
    except Exception as err:  # torch raises many kinds for truncated or foreign files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CaclError(f"{path} is not a readable {what} ({reason[:120]})") from None
    return loaded, hashlib.sha256(data).hexdigest()


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; anything that is not one becomes a one-line error."""
    path = Path(path)
    if not present(path):
        raise CaclError(f"checkpoint {path} does not exist")
    state = read_tensors(path, "cacl checkpoint", map_location)
    if not isinstance(state, dict) or "model" not in state:
        raise CaclError(f"{path} is not a cacl checkpoint (no 'model' entry)")
    check_format(state, path)
    _check_fields(state, path)
    _check_finite(state["model"], path)  # never resumed from, never called the last good one
    return state


def _check_fields(state: dict[str, Any], path: Path) -> None:
    """Each field of a training checkpoint of the type a resume needs, so a damaged one is
    skipped for the previous good one instead of failing half-way through the restore."""
    rng = state.get("rng")
    wrong = [
        name
        for name, good in (
            (
                "model",
                isinstance(state["model"], dict)
                and all(torch.is_tensor(v) for v in state["model"].values()),
            ),
            ("optimizer", isinstance(state.get("optimizer"), dict)),
            ("step", isinstance(state.get("step"), int) and state["step"] >= 0),
            ("rng", isinstance(rng, dict) and torch.is_tensor(rng.get("torch"))),
            ("config", isinstance(state.get("config"), dict)),
        )
        if not good
    ]
    if wrong:
        raise CaclError(f"{path}: field '{wrong[0]}' is missing or of the wrong type (damaged?)")


def check_format(state: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint written by a newer cacl, whose layout this one cannot know, and one
    whose format is no format number (damaged)."""
    given = state.get("format", FORMAT)
    if not isinstance(given, int) or isinstance(given, bool) or given < 1:
        raise CaclError(
            f"{path}: field 'format' is {str(given)[:40]!r}, not a checkpoint format "
            "number (damaged?)"
        )
    if given > FORMAT:
        raise CaclError(
            f"{path} has checkpoint format {state['format']}, newer than this cacl reads "
            f"({FORMAT}); upgrade cacl"
        )


def saved_config(state: dict[str, Any], path: Path) -> Config:
    """The typed config a pretrain checkpoint was trained with."""
    if not isinstance(state.get("config"), dict):
        raise CaclError(f"{path} is not a cacl pretrain checkpoint (no config in it)")
    try:
        return from_saved(state["config"], str(path))
    except CaclError as err:
        raise CaclError(f"{err}; if a newer cacl wrote it, upgrade cacl to read it") from None


def read_weights(path: Path) -> tuple[dict, Config | None, str]:
    """(state dict, cacl config or None, the file's SHA-256) from a cacl checkpoint, a MoCo-v2
    checkpoint or a plain state dict file, read once."""
    raw, digest = read_tensors_once(path, "checkpoint or state dict")
    config = None
    if isinstance(raw, dict) and "model" in raw and "config" in raw:  # a cacl pretrain checkpoint
        check_format(raw, path)
        raw, config = raw["model"], saved_config(raw, path)  # its config's errors are the answer
    elif isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]  # MoCo-v2's checkpoint layout
    if not isinstance(raw, dict) or not all(torch.is_tensor(v) for v in raw.values()):
        raise CaclError(f"{path} holds no state dict of tensors")
    _check_finite(raw, path)
    return raw, config, digest


def _check_finite(state: dict, path: Path) -> None:
    """Weights of a diverged run are refused before anything is computed with them."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CaclError(
                f"{path}: weight '{key}' holds NaN or inf (the run diverged before it was saved); "
                "evaluate an earlier checkpoint of the run"
            )


def training_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    step: int,
    cfg: Config,
) -> dict[str, Any]:
    """Everything a resume needs, in the checkpoint layout."""
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "format": FORMAT,
        "step": step,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict(),
        "config": cfg.plain(),
        "rng": rng,
    }


def restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
) -> int:
    """Load a checkpoint into the model, optimiser, scaler and random state; returns its step."""
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        reason = str(err).strip().splitlines()[0]
        raise CaclError(
            f"checkpoint does not fit this model ({reason[:120]}); resume with the run's own config"
        ) from None
    scaler.load_state_dict(state.get("scaler", {}))
    torch.set_rng_state(state["rng"]["torch"])
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    return int(state["step"])


def newest_last(run_dir: Path) -> list[Path]:
    """A run's checkpoints, the one the ``latest`` pointer names last (when it names one that
    exists), the others by step before it: the order in which to try them, from the end."""
    candidates = list_checkpoints(run_dir)
    pointer = RunFolder(Path(run_dir)).latest
    text = pointer.read_text(errors="replace").strip() if pointer.is_file() else ""
    named = pointer.parent / text if text else None
    if named in candidates:
        candidates.remove(named)
        candidates.append(named)
    return candidates


def latest_checkpoint(run_dir: Path, warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads; damaged ones are reported and skipped. None when the run
    has no checkpoint yet; an error when it has some and none loads (starting over would
    overwrite them)."""
    candidates = newest_last(run_dir)
    for path in reversed(candidates):
        try:
            return path, load_checkpoint(path)
        except CaclError as err:
            warn(f"warning: skipping damaged checkpoint: {err}")
    if candidates:
        raise CaclError(
            f"{RunFolder(Path(run_dir)).checkpoints}: none of its {len(candidates)} "
            "checkpoint(s) loads; restore one, or move the folder aside to start the run over"
        )
    return None


def find_checkpoint(path: Path) -> Path:
    """A checkpoint file from a path that names one or a run folder holding some."""
    path = Path(path)
    if path.is_dir():
        found = newest_last(path)
        if not found:
            raise CaclError(f"run folder {path} holds no checkpoints/step-*.pt")
        return found[-1]
    if not path.exists():
        raise CaclError(f"checkpoint {path} does not exist; give a run folder or a .pt file")
    return path
