"""Backbone weights in and out: cacl checkpoints, torchvision state dicts, MoCo-v2 checkpoints,
and ``cacl export``'s plain state dicts.

Every load reports what it took and refuses a load that matched nothing, so a wrong file never
silently yields a random backbone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from cacl_cli.checkpoint import find_checkpoint, read_weights
from cacl_cli.config import Config, resolve
from cacl_cli.errors import CaclError
from cacl_cli.files import (
    parse_json,
    present,
    read_text,
    write_atomic,
    write_text_atomic,
)
from cacl_cli.model.backbone import OUTPUT_STRIDE, build_backbone, conv_layout
from cacl_cli.model.build import encoder_from_config
from cacl_cli.run_folder import judged_name

# Prefixes under which a backbone's parameters appear in the files we read.
PREFIXES = ("online.backbone.", "module.encoder_q.", "encoder_q.", "module.", "backbone.", "")


@dataclass(frozen=True)
class Weights:
    """The weights an evaluation runs on, resolved once by the command: a file's tensors (a cacl
    run or checkpoint, a MoCo-v2 checkpoint, a state dict; read once, with its digest), a random
    init of ``arch``/``width`` seeded by ``seed``, or a baseline that needs no network."""

    source: str  # the file, "random init" or "<name> baseline"
    arch: str
    width: int
    seed: int = 0
    path: Path | None = None
    state: dict | None = field(default=None, repr=False)  # the file's tensors
    config: Config | None = None  # a cacl checkpoint's own: its arch and width win
    sha256: str | None = None
    baseline: str | None = None
    name: str = "random-init"  # what was judged, as an output folder names it (judged_name)

    @classmethod
    def of(cls, checkpoint: Path | None, arch: str, width: int, seed: int = 0) -> "Weights":
        """A checkpoint file or run folder, read now; None: a random init."""
        if checkpoint is None:
            return cls("random init", arch, width, seed)
        path = find_checkpoint(Path(checkpoint))
        state, config, digest = read_weights(path)
        name = judged_name(checkpoint)
        return cls(str(path), arch, width, seed, path, state, config, digest, name=name)

    @classmethod
    def of_baseline(cls, name: str) -> "Weights":
        return cls(f"{name} baseline", "none", 0, baseline=name, name=f"{name}-baseline")


def _backbone_keys(state: dict, wanted: set[str]) -> tuple[dict, str]:
    """The sub-dict of ``state`` that best matches ``wanted`` names, and the prefix it had."""
    best, best_prefix = {}, ""
    for prefix in PREFIXES:
        found = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and k[len(prefix) :] in wanted
        }
        if len(found) > len(best):
            best, best_prefix = found, prefix
    return best, best_prefix


def shape_of(state: dict) -> tuple[str, int] | None:
    """(arch, width) that a ResNet state dict's own tensors imply: the first convolution's output
    channels are the width, and only ResNet-50's blocks have a third convolution."""
    for prefix in PREFIXES:
        stem = state.get(prefix + "conv1.weight")
        if torch.is_tensor(stem) and stem.dim() == 4:
            deep = prefix + "layer1.0.conv3.weight" in state
            return ("resnet50" if deep else "resnet18"), int(stem.shape[0])
    return None


def load_backbone(checkpoint: Path | None, arch: str, width: int) -> tuple[nn.Module, dict]:
    """``backbone_of`` the weights in ``checkpoint`` (None: a random init of ``arch``/``width``)."""
    return backbone_of(Weights.of(checkpoint, arch, width))


def backbone_of(weights: Weights) -> tuple[nn.Module, dict]:
    """A backbone and a report {source, sha256, arch, width, loaded, missing, unused, prefix}.

    A random init is built of the weights' ``arch``/``width`` (from the random state as it
    stands: the caller seeds it). A cacl run folder or checkpoint brings its own arch and
    width; a foreign state dict's are read from its tensors' shapes (``arch``/``width`` only
    where the shapes cannot tell).
    """
    if weights.state is None:
        report = {"source": "random init", "arch": weights.arch, "width": weights.width}
        return build_backbone(weights.arch, weights.width), report
    return _backbone_from_state(weights)


def _backbone_from_state(weights: Weights) -> tuple[nn.Module, dict]:
    """The backbone in a file's tensors and its report; its arch and width are its config's,
    else its tensors' shapes', else the weights' own ``arch``/``width``."""
    state, config, path = weights.state, weights.config, weights.path
    if config is not None:
        arch, width = config.model.arch, config.model.width
    else:
        arch, width = shape_of(state) or (weights.arch, weights.width)
    net = build_backbone(arch, width)
    _check_layout(path, net, arch, width)
    wanted = set(net.state_dict())
    found, prefix = _backbone_keys(state, wanted)
    if not found:
        raise CaclError(
            f"{path}: no {arch} backbone weights in it (looked for keys like "
            f"'conv1.weight' under {', '.join(p or '(none)' for p in PREFIXES[:-1])})"
        )
    shapes = net.state_dict()
    wrong = [k for k, v in found.items() if v.shape != shapes[k].shape]
    if wrong:
        raise CaclError(
            f"{path}: weights do not fit a {arch} of width {width} "
            f"(first mismatch: {wrong[0]} {tuple(found[wrong[0]].shape)} vs "
            f"{tuple(shapes[wrong[0]].shape)})"
        )
    missing = sorted(k for k in wanted - set(found) if not k.endswith("num_batches_tracked"))
    if missing:
        raise CaclError(
            f"{path}: {len(missing)} of the {arch}'s tensors are not in it "
            f"(first: {missing[0]}); refusing a partial load"
        )
    net.load_state_dict(found, strict=False)
    taken = {prefix + k for k in found}
    return net, {
        "source": str(path),
        "sha256": weights.sha256,
        "arch": arch,
        "width": width,
        "loaded": len(found),
        "missing": missing,
        "unused": sorted(k for k in state if k not in taken),  # e.g. MoCo's encoder_k, fc, queue
        "prefix": prefix,
    }


def load_encoder(
    checkpoint: Path | None, arch: str, width: int, dim: int = 128
) -> tuple[nn.Module, dict]:
    """The online encoder (backbone + the heads it was trained with) of a cacl checkpoint.

    A foreign state dict gives a backbone without heads; None gives a random-init encoder with all
    three heads, labelled as such in the report.
    """
    if checkpoint is None:
        shape = {"model.arch": arch, "model.width": width, "model.dim": dim}
        return encoder_from_config(resolve("defaults", values=shape)), {
            "source": "random init",
            "arch": arch,
            "width": width,
        }
    weights = Weights.of(checkpoint, arch, width)
    state, config, path = weights.state, weights.config, weights.path
    if config is None:
        backbone, report = _backbone_from_state(weights)
        shape = {"model.arch": report["arch"], "model.width": report["width"], "model.dim": dim}
        encoder = encoder_from_config(resolve("defaults", values=shape), heads=())
        encoder.backbone = backbone
        return encoder, report
    heads = config.heads.on()
    encoder = encoder_from_config(config)
    online = {k[len("online.") :]: v for k, v in state.items() if k.startswith("online.")}
    try:
        encoder.load_state_dict(online)
    except RuntimeError as err:
        raise CaclError(
            f"{path}: its online network does not match its own config "
            f"({str(err).splitlines()[0][:100]})"
        ) from None
    return encoder, {
        "source": str(path),
        "sha256": weights.sha256,
        "arch": config.model.arch,
        "width": config.model.width,
        "heads": list(heads),
    }


LAYOUT = "layout.json"  # beside an exported backbone.pt: the network its tensors need


def layout_of(net: nn.Module, arch: str, width: int) -> dict:
    """What ``layout.json`` records for a backbone: arch, width, stride, and each convolution's
    stride, dilation and padding (``backbone.conv_layout``)."""
    return {"arch": arch, "width": width, "output_stride": OUTPUT_STRIDE, "convs": conv_layout(net)}


def _check_layout(path: Path, net: nn.Module, arch: str, width: int) -> None:
    """A file exported with a layout.json beside it must fit the network built to load it."""
    beside = path.with_name(LAYOUT)
    if not present(beside):
        return
    try:
        recorded = parse_json(read_text(beside, "a layout file"), str(beside))
    except ValueError as err:
        raise CaclError(f"{err}; export the run again") from None
    expected = layout_of(net, arch, width)
    differing = (
        [k for k in expected if recorded.get(k) != expected[k]]
        if isinstance(recorded, dict)
        else ["the whole file"]
    )
    if differing:
        raise CaclError(
            f"{beside}: the layout its weights were exported with differs from the {arch} of "
            f"width {width} built to load them ({differing[0]}); load them into the network "
            "the file describes"
        )


def export_run(run: Path, folder: Path, arch: str, width: int) -> tuple[Path, dict, int]:
    """Write backbone.pt (torchvision ResNet names, no fc), heads.pt, both plain tensors, and
    layout.json: the network the backbone's tensors need (docs/commands.md shows how to build
    it from torchvision's ResNet).

    A cacl run brings its own arch and width, a foreign state dict its tensors' shapes.
    Returns the backbone file, the load report and the number of backbone tensors.
    """
    encoder, report = load_encoder(run, arch, width)
    backbone = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    heads = {k: v.clone() for k, v in encoder.heads.state_dict().items()}
    write_atomic(folder / "backbone.pt", lambda fh: torch.save(backbone, fh))
    write_atomic(folder / "heads.pt", lambda fh: torch.save(heads, fh))
    layout = layout_of(encoder.backbone, report["arch"], report["width"])
    write_text_atomic(folder / LAYOUT, json.dumps(layout, indent=1) + "\n")
    return folder / "backbone.pt", report, len(backbone)
