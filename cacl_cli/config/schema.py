"""Every key of every preset, once: one frozen dataclass per section, one ``key(...)`` per key.

A key's default, type, choices or range and its help live here and nowhere else. Engines take
their section as it is; ``presets/defaults.yaml`` is rendered from these classes
(``python -m cacl_cli.config > presets/defaults.yaml``) and a test checks that the shipped
file is that rendering, so the YAML a user reads cannot drift from what the code uses.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, fields, make_dataclass
from typing import Any, Iterator, Optional

import yaml

from cacl_cli.config.head_keys import HEAD_KEYS
from cacl_cli.config.keys import ABOVE_ZERO, INF, SEED, key


@dataclass(frozen=True)
class RunSection:
    seed: int = key(0, "seeds the model init, the batches and the augmentations", span=SEED)
    device: str = key("auto", "auto | cpu | cuda | cuda:N | mps (the --device option sets this)")
    amp: str = key(
        "auto",
        "mixed precision: auto (CUDA: bf16 if supported, else fp16; CPU: bf16 with native bf16 "
        "instructions, else float32), bf16, fp16 (CUDA only), off. Pretrain writes what it "
        "resolved to config.yaml, so a resumed run keeps it; propagate's backbone follows it.",
        choices=("auto", "off", "bf16", "fp16"),
    )
    deterministic: bool = key(False, "deterministic algorithms, for bit-exact resumes on CPU")
    compile: bool = key(
        False,
        "torch.compile the two encoders (opt-in: the first steps pay for the compilation, about"
        " a minute on a CPU; same results within 1e-3)",
    )
    checkpoint_every: int = key(
        1000,
        "steps between checkpoints (one is always written at the end)",
        span=(1, INF),
    )
    keep_checkpoints: int = key(2, "how many recent checkpoints to keep", span=(0, 10000))
    log_every: int = key(20, "steps between metrics.jsonl records", span=(1, INF))
    truth_pairs: int = key(
        16,
        "built-in world only: frame pairs with known correspondence on which each logged step "
        "measures the truth/* signals (0: off; README)",
        span=(0, 4096),
    )


@dataclass(frozen=True)
class ModelSection:
    arch: str = key(
        "resnet18",
        "resnet18 | resnet50, both dilated to output stride 8",
        choices=("resnet18", "resnet50"),
    )
    width: int = key(
        64,
        "first-stage channels; 16 or 32 make small CPU models (resnet18 only)",
        span=(1, 4096),
    )
    dim: int = key(128, "channels of the contrastive space (MoCo-v2)", span=(1, 65536))
    pixel_shuffle: str = key(
        "independent",
        "off | shared (one roll for v and v+) | independent (a roll each)",
        choices=("off", "shared", "independent"),
    )
    dense_stage: str = key(
        "layer4",
        "the stage the pixel and cycle heads read: layer4 (the paper: the last, as the global "
        "head) or layer3 (res4; layer4 then learns from g_G only)",
        choices=("layer3", "layer4"),
    )
    dense_neck: int = key(
        0,
        "residual blocks of the pixel and cycle heads' own between that stage and them (0: the "
        "paper); the backbone users read stays below them",
        span=(0, 64),
    )
    init: Optional[str] = key(
        None,
        "pretrain: start the backbone from this file (a MoCo-v2 checkpoint with "
        "module.encoder_q.* keys, or a torchvision ResNet state dict)",
    )
    sync_bn: bool = key(
        False,
        "torchrun on CUDA: BN statistics of the online encoder over all GPUs",
    )
    bn_groups: int = key(
        1,
        "online encoder's batch split into groups with their own BN statistics: N emulates the "
        "per-GPU BN of N GPUs on one device",
        span=(1, 4096),
    )


@dataclass(frozen=True)
class HeadsBase:
    """which heads are trained (Table 1a)"""

    def __getitem__(self, head: str) -> bool:
        """``heads["global"]``: ``global`` is a Python keyword, so not an attribute name."""
        return getattr(self, field_name(head))

    def on(self) -> tuple[str, ...]:
        """The heads that are trained, in the heads' order (the paper's)."""
        return tuple(key_name(f.name) for f in fields(self) if getattr(self, f.name))


@dataclass(frozen=True)
class LossBase:
    # The loss terms' shared keys; each head declares its own (its weight, its options).
    tau: float = key(0.07, "temperature of every softmax (MoCo)", span=(ABOVE_ZERO, 100))
    symmetric: bool = key(False, "also compute v+ -> v (MoCo-v2 does not symmetrise)")
    queue_matmul: str = key(
        "float32",
        "dtype of the pixel and cycle heads' products with their queues (the largest of a "
        "step): float32, bfloat16, or auto (bfloat16 under bf16 autocast on CUDA and on CPUs "
        "with bf16 instructions; docs/results.md)",
        choices=("float32", "bfloat16", "auto"),
    )


@dataclass(frozen=True)
class MocoBase:
    momentum: float = key(0.999, "EMA of the momentum encoder", span=(0, 1))
    queue_size: int = key(
        16384,
        "negatives of the global and pixel heads (a quarter of MoCo's, as the paper)",
        span=(1, 10**8),
    )
    pixels_per_image: int = key(
        8,
        "momentum pixels per image fed to the pixel and cycle queues per step",
        span=(1, 65536),
    )
    shuffle_bn_groups: int = key(
        4,
        "momentum batch split into groups with their own BN statistics (per process; under "
        "torchrun each GPU is one more level of grouping)",
        span=(1, 4096),
    )
    batch_shuffle: bool = key(
        True,
        "permute the momentum batch before grouping (shuffle-BN); under torchrun the "
        "permutation spans every GPU. Each queue's size must be a multiple (or a divisor) of "
        "the keys it receives per step, over all GPUs",
    )


@dataclass(frozen=True)
class DataSection:
    path: Optional[str] = key(
        None,
        "a pairs folder (cacl extract-pairs) or an image folder; null: the built-in world",
    )
    batch_size: int = key(
        32,
        "images per micro-batch per process (x GPUs x optim.accum_steps per step)",
        span=(1, 65536),
    )
    num_workers: int = key(2, "loader processes building batches", span=(0, 1024))
    size: int = key(224, "side of the crops fed to the network", span=(8, 8192))
    stride: int = key(
        8,
        "built-in world: frames between v and v+ (0 = two augmentations of one frame); a pairs "
        "folder keeps the stride it was extracted with",
        span=(0, 100000),
    )


@dataclass(frozen=True)
class AugmentSection:
    """MoCo-v2's, with one shared crop box and flip for v and v+"""

    shared_crop: bool = key(
        True,
        "false: independent crop boxes and flips (MoCo-v2 on still images)",
    )
    crop_scale: tuple = key(
        (0.2, 1.0),
        "[low, high] area of the random crop, as a share of the frame",
        span=(ABOVE_ZERO, 1),
    )
    jitter: float = key(
        0.4,
        "strength of the colour jitter (brightness, contrast, saturation; hue a quarter)",
        span=(0, 1),
    )
    jitter_p: float = key(0.8, "probability of the colour jitter", span=(0, 1))
    grayscale_p: float = key(0.2, "probability of turning the crop grey", span=(0, 1))
    blur_p: float = key(0.5, "probability of a Gaussian blur", span=(0, 1))
    flip_p: float = key(0.5, "probability of a horizontal flip", span=(0, 1))


@dataclass(frozen=True)
class OptimSection:
    lr: float = key(
        1.0,
        "pretrain: learning rate for lr_batch images per step, scaled linearly",
        span=(0, 1e6),
    )
    lr_batch: int = key(512, "the batch size at which optim.lr applies as given", span=(1, 10**8))
    momentum: float = key(0.9, "SGD momentum", span=(0, 1))
    weight_decay: float = key(1e-06, "L2 weight decay", span=(0, 1))
    trust: float = key(0.001, "LARS trust coefficient", span=(ABOVE_ZERO, 1000.0))
    accum_steps: int = key(
        1,
        "pretrain: micro-batches of data.batch_size per optimiser step; each enqueues its keys,"
        " so later micro-batches see earlier ones as negatives",
        span=(1, 4096),
    )


@dataclass(frozen=True)
class ScheduleSection:
    steps: int = key(100000, "pretrain", span=(1, 10**9))
    warmup_steps: int = key(
        1000,
        "pretrain: linear warm-up before the cosine decay",
        span=(0, 10**9),
    )
    epochs: int = key(300, "probe and finetune (cosine decay, no warm-up)", span=(1, 10**7))


@dataclass(frozen=True)
class EvalSection:
    """probe and finetune; optim.lr is used as is there (no batch scaling), with plain SGD
    (optim.momentum, optim.weight_decay)"""

    dataset: str = key(
        "world",
        "world | voc | cityscapes | folder (the last three read --data)",
        choices=("world", "voc", "cityscapes", "folder"),
    )
    train_split: str = key(
        "train",
        "the split trained on (a file under ImageSets or a folder's list)",
    )
    val_split: str = key("val", "the split scored")
    resize: int = key(
        0,
        "short side in pixels before the backbone; 0 keeps each image's size",
        span=(0, 8192),
    )
    flip: bool = key(False, "probe: random horizontal flips while training the classifier")
    layer: str = key(
        "layer4",
        "probe: the backbone stage the classifier reads: layer4 (the last, the paper), layer3 "
        "(res4) or layer2; all have stride 8",
        choices=("layer2", "layer3", "layer4"),
    )
    cache: str = key(
        "memory",
        "probe: memory | disk | off; frozen features computed once",
        choices=("memory", "disk", "off"),
    )
    cache_gb: float = key(
        4.0,
        "probe: memory budget of the cache; the rest spills to disk",
        span=(0, 1e6),
    )
    fractions: tuple = key(
        (100,),
        "finetune: percent of the training images, one run each",
        span=(ABOVE_ZERO, 100),
    )
    subset_seed: int = key(
        0,
        "finetune: picks the subsets (nested: 1 % lies inside 5 %)",
        span=SEED,
    )
    world_train_images: int = key(
        200,
        "labelled frames of the built-in world per split",
        span=(1, 10**7),
    )
    world_val_images: int = key(
        100,
        "labelled frames of the built-in world in the validation split",
        span=(1, 10**7),
    )


@dataclass(frozen=True)
class WorldSection:
    """the built-in world (used when no data is given)"""

    size: int = key(96, "frame side in pixels", span=(16, 4096))
    classes: int = key(5, "object classes, 1 to 6", span=(1, 6))
    objects_min: int = key(3, "fewest objects in a clip", span=(0, 64))
    objects_max: int = key(5, "most objects in a clip", span=(1, 64))
    scale_min: float = key(0.3, "object size relative to the frame side", span=(ABOVE_ZERO, 1))
    scale_max: float = key(
        0.6,
        "largest object size relative to the frame side",
        span=(ABOVE_ZERO, 1),
    )
    speed: float = key(1.5, "object speed, pixels per frame at most", span=(0, 1000.0))
    pan: float = key(1.0, "camera pan, pixels per frame at most", span=(0, 1000.0))
    frames: int = key(32, "frames per clip", span=(2, 100000))
    clips: int = key(10000, "clips in the training split", span=(1, 10**9))
    seed: int = key(0, "the world itself; independent of run.seed", span=SEED)


@dataclass(frozen=True)
class ExtractSection:
    """cacl extract-pairs (its flags are short-hands for these keys)"""

    stride: int = key(8, "frames between the two of a pair", span=(1, 100000))
    pairs_per_clip: int = key(1, "draws per clip", span=(1, 100000))
    frames_per_clip: int = key(
        2,
        "frames per draw, each `stride` apart (>2: training picks a pair)",
        span=(2, 10000),
    )
    short_side: int = key(256, "resize to this short side (0: keep)", span=(0, 8192))
    quality: int = key(90, "JPEG quality", span=(1, 100))
    workers: int = key(0, "processes (0: one per core this process may use)", span=(0, 1024))
    seed: int = key(0, "seeds the start frames (per clip id)", span=SEED)
    timeout: float = key(120.0, "seconds allowed per clip", span=(1, 1e7))
    extensions: tuple = key((), "video suffixes to take; empty: the common ones")
    seek: bool = key(False, "seek to keyframes: faster, but wrong frames on open-GOP files")
    format: str = key(
        "folder",
        "folder: a JPEG per frame | tar: WebDataset-style shards, pairs-NNNNNN.tar",
        choices=("folder", "tar"),
    )
    shard_size: float = key(1000.0, "tar format: a new shard past this many MB", span=(0.01, 1e6))


@dataclass(frozen=True)
class PropagateSection:
    """cacl propagate (its flags are short-hands for these keys); the backbone of --random-init is
    model.arch / model.width, seeded by run.seed"""

    size: int = key(240, "short side of the frames fed to the backbone", span=(8, 8192))
    context: int = key(
        5,
        "recent predicted frames used as context (plus the first)",
        span=(0, 1000),
    )
    topk: int = key(10, "context positions voting per position", span=(1, 1000000))
    radius: float = key(12.0, "vote radius in feature cells (Euclidean)", span=(0, 1e6))
    temperature: float = key(
        0.07,
        "softmax temperature of the top-k affinities",
        span=(ABOVE_ZERO, 100),
    )
    labels: str = key(
        "auto",
        "auto | indexed (DAVIS-2017: ids, 255 void) | binary (DAVIS-2016: 255 object)",
        choices=("auto", "indexed", "binary"),
    )
    frames: int = key(0, "use only the first N frames (0: all)", span=(0, 10**7))
    layer: str = key(
        "layer4",
        "the backbone stage whose features vote: layer4 (the last), layer3, layer2",
        choices=("layer2", "layer3", "layer4"),
    )


@dataclass(frozen=True)
class PresetInfo:
    name: str = "defaults"
    chain: tuple = ()


@dataclass(frozen=True)
class Config:
    """A resolved config: defaults, then a preset chain, then ``--set``; read-only."""

    run: RunSection
    model: ModelSection
    heads: HeadsBase  # each a dataclass of its base's keys and the heads' (sections_with)
    loss: LossBase
    moco: MocoBase
    data: DataSection
    augment: AugmentSection
    optim: OptimSection
    schedule: ScheduleSection
    eval: EvalSection
    world: WorldSection
    extract: ExtractSection
    propagate: PropagateSection
    preset: PresetInfo

    @classmethod
    def from_tree(cls, tree: dict) -> "Config":
        """Typed views over a validated nested dict that has every key."""
        views = {
            name: view(**{field_name(k): _frozen(v) for k, v in tree[name].items()})
            for name, view in SECTIONS.items()
        }
        return cls(**views)

    def plain(self) -> dict:
        """The nested dict that ``config.yaml`` and checkpoints store."""
        return {f.name: _plain_section(getattr(self, f.name)) for f in fields(self)}


def field_name(key: str) -> str:
    return "global_" if key == "global" else key  # `global` is a Python keyword


def key_name(field_name: str) -> str:
    return "global" if field_name == "global_" else field_name


def _note(section: type) -> str:
    """A section's docstring on one line; none where dataclass made one up from the fields."""
    doc = section.__doc__ or ""
    return "" if doc.startswith(section.__name__ + "(") else " ".join(doc.split())


def with_head_keys(name: str, base: type, section: str, head_keys: dict) -> type:
    """``base`` and, after its own, every head's keys of ``section``, in the heads' order."""
    declared = [
        (field_name(dotted.split(".", 1)[1]), type(spec.default), _fresh(spec))
        for keys in head_keys.values()
        for dotted, spec in keys.items()
        if dotted.split(".", 1)[0] == section
    ]
    section_class = make_dataclass(name, declared, bases=(base,), frozen=True)
    if _note(base):  # the base's docstring, not the one dataclass makes up from the fields
        section_class.__doc__ = base.__doc__
    return section_class


def _fresh(spec):
    """A field like ``spec`` that no dataclass has taken yet (a field belongs to one class)."""
    meta = spec.metadata
    return key(spec.default, meta["help"], choices=meta["choices"], span=meta["span"])


def sections_with(head_keys: dict) -> dict[str, type]:
    """Every section, the heads' keys (``head_keys``: name -> their declarations) added to the
    sections they name, in the order of presets/defaults.yaml."""
    return {
        "run": RunSection,
        "model": ModelSection,
        "heads": with_head_keys("HeadsSection", HeadsBase, "heads", head_keys),
        "loss": with_head_keys("LossSection", LossBase, "loss", head_keys),
        "moco": with_head_keys("MocoSection", MocoBase, "moco", head_keys),
        "data": DataSection,
        "augment": AugmentSection,
        "optim": OptimSection,
        "schedule": ScheduleSection,
        "eval": EvalSection,
        "world": WorldSection,
        "extract": ExtractSection,
        "propagate": PropagateSection,
        "preset": PresetInfo,
    }


SECTIONS: dict[str, type] = sections_with(HEAD_KEYS)


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _plain_section(section: Any) -> dict:
    return {key_name(f.name): _plain(getattr(section, f.name)) for f in fields(section)}


def keys() -> Iterator[tuple[str, Any]]:
    """(``section.key``, its dataclass field) for every key, in the order of defaults.yaml."""
    for name, section in SECTIONS.items():
        if section is not PresetInfo:
            for f in fields(section):
                yield f"{name}.{key_name(f.name)}", f


KEYS = dict(keys())


def defaults_tree() -> dict:
    """{section: {key: default}}: the schema that presets are validated against."""
    tree: dict = {}
    for dotted, f in KEYS.items():
        section, name = dotted.split(".")
        tree.setdefault(section, {})[name] = _plain(f.default)
    return tree


def choices(dotted: str) -> tuple[str, ...]:
    return KEYS[dotted].metadata["choices"] if dotted in KEYS else ()


def span(dotted: str) -> tuple | None:
    return KEYS[dotted].metadata["span"] if dotted in KEYS else None


# ---------------------------------------------------------------- defaults.yaml, rendered

HEADER = """\
# Every key of every preset, with its default. A preset names only what it changes;
# `--set section.key=value` changes one key on the command line. Rendered from
# cacl_cli/config/schema.py (python -m cacl_cli.config > presets/defaults.yaml).
"""
COMMENT_AT = 27  # the column where comments start
WIDTH = 100


def _commented(text: str, comment: str) -> list[str]:
    if not comment:
        return [text]
    lines = textwrap.wrap(comment, WIDTH - COMMENT_AT - 2)
    first = f"{text:<{COMMENT_AT - 1}} # {lines[0]}"
    return [first] + [" " * COMMENT_AT + f"# {line}" for line in lines[1:]]


def _yaml_value(value: Any) -> str:
    return yaml.safe_dump(_plain(value), default_flow_style=True, width=1000).split("\n")[0]


def render_defaults() -> str:
    """``presets/defaults.yaml``: every section and key with its default and help."""
    out = [HEADER]
    for name, section in SECTIONS.items():
        if section is PresetInfo:
            continue
        out += _commented(f"{name}:", _note(section))
        for f in fields(section):
            out += _commented(f"  {key_name(f.name)}: {_yaml_value(f.default)}", f.metadata["help"])
        out.append("")
    return "\n".join(out)
