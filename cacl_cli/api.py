"""The names a script may rely on, beside the ``cacl`` command itself.

What a user's script does with cacl: resolve a preset, build and train the model, load weights,
turn frames into features, propagate masks, score them. The benchmarks under ``bench/`` use only
these and the command (``tests/test_api.py`` checks), so they keep working as the modules behind
them are regrouped. Everything else in the package may change without notice.
"""

from cacl_cli.checkpoint import latest_checkpoint, load_checkpoint
from cacl_cli.config import Config, resolve, section
from cacl_cli.data.images import normalise_batch, read_rgb, to_input
from cacl_cli.data.pairs import PairsFolder
from cacl_cli.data.segmentation import read_index_png
from cacl_cli.data.worker_pool import usable_cores
from cacl_cli.data.world import World, correspondence_pairs
from cacl_cli.device import amp_dtype, autocast
from cacl_cli.evaluate.davis import read_annotation, score_sequence
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
    # presets: a name or YAML file (+ layers, --set overrides) -> typed settings
    "Config",
    "resolve",
    "section",
    # the model, its heads, its data stream, its optimizer and its training loop
    "HEADS",
    "LARS",
    "build_batches",
    "lars_param_groups",
    "model_from_config",
    "pretrain",
    # weights: a run folder, its checkpoints, a backbone or encoder ready to use
    "RunFolder",
    "latest_checkpoint",
    "load_backbone",
    "load_checkpoint",
    "load_encoder",
    # frames in: pairs folders, the built-in world, images as network input
    "PairsFolder",
    "World",
    "normalise_batch",
    "read_index_png",
    "read_rgb",
    "to_input",
    # propagation and its scores (DAVIS J&F; on the world, matches against the true motion)
    "correspondence_pairs",
    "open_sequence",
    "propagate_step",
    "read_annotation",
    "score_sequence",
    "sequences",
    "truth_health",
    # the machine: precision, memory and progress as the command handles them
    "amp_dtype",
    "autocast",
    "progress_bar",
    "reuse_freed_memory",
    "usable_cores",
]
