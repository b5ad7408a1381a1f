"""The names a script may rely on, beside the ``cacl`` command itself.

The benchmarks under ``bench/`` use only these and the command (``tests/test_api.py`` checks), so
they keep working as the modules behind them are regrouped; a user's own script that loads a
backbone, builds the model of a preset or scores DAVIS masks should import from here too.
"""

from cacl_cli.checkpoint import latest_checkpoint, load_checkpoint
from cacl_cli.config import Config, ExtractSection, resolve, section
from cacl_cli.data.extract import (
    assign_ids,
    choose_starts,
    clip_id,
    find_videos,
    process_clip,
    worker_init,
)
from cacl_cli.data.images import normalise_batch, read_rgb, resize_short_side, to_input
from cacl_cli.data.manifest import known_sources, merge
from cacl_cli.data.pair_index import read_index, write_index
from cacl_cli.data.pairs import PairsFolder
from cacl_cli.data.segmentation import open_splits, read_index_png
from cacl_cli.data.world import World, correspondence_pairs
from cacl_cli.device import amp_dtype, autocast
from cacl_cli.evaluate.common import prepare
from cacl_cli.evaluate.davis import read_annotation, score_sequence
from cacl_cli.evaluate.probe import train_probe
from cacl_cli.evaluate.propagate import open_sequence, propagate_step, sequences
from cacl_cli.memory import reuse_freed_memory
from cacl_cli.model.build import model_from_config
from cacl_cli.model.diagnostics import truth_health
from cacl_cli.model.heads import HEADS
from cacl_cli.optim import LARS, lars_param_groups
from cacl_cli.pretrained import load_backbone, load_encoder
from cacl_cli.progress import progress_bar
from cacl_cli.run_folder import RunFolder
from cacl_cli.training import build_batches, pretrain

__all__ = [
    # presets and config
    "Config",
    "ExtractSection",
    "resolve",
    "section",
    # the model, its heads and its training
    "HEADS",
    "LARS",
    "build_batches",
    "lars_param_groups",
    "model_from_config",
    "pretrain",
    "truth_health",
    # weights in and out
    "RunFolder",
    "latest_checkpoint",
    "load_backbone",
    "load_checkpoint",
    "load_encoder",
    # data
    "PairsFolder",
    "World",
    "assign_ids",
    "choose_starts",
    "clip_id",
    "correspondence_pairs",
    "find_videos",
    "known_sources",
    "merge",
    "normalise_batch",
    "open_splits",
    "process_clip",
    "read_index",
    "read_index_png",
    "read_rgb",
    "resize_short_side",
    "to_input",
    "worker_init",
    "write_index",
    # evaluation
    "open_sequence",
    "prepare",
    "propagate_step",
    "read_annotation",
    "score_sequence",
    "sequences",
    "train_probe",
    # the machine
    "amp_dtype",
    "autocast",
    "progress_bar",
    "reuse_freed_memory",
]
