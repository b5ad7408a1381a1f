"""Backbone weights in and out: cacl checkpoints, torchvision state dicts, MoCo-v2 checkpoints,
and ``cacl export``'s plain state dicts.

Every load reports what it took and refuses a load that matched nothing, so a wrong file never
silently yields a random backbone.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from torch import nn

from cacl_cli.checkpoint import find_checkpoint, read_weights
from cacl_cli.config import Config, resolve
from cacl_cli.errors import CaclError
from cacl_cli.files import (
    open_regular, parse_json, present, read_text, write_atomic, write_text_atomic,
)  # fmt: skip
from cacl_cli.model.backbone import OUTPUT_STRIDE, build_backbone, conv_layout
from cacl_cli.model.build import encoder_from_config

# Prefixes under which a backbone's parameters appear in the files we read.
PREFIXES = ("online.backbone.", "module.encoder_q.", "encoder_q.", "module.", "backbone.", "")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_regular(path, "a weights file") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
    """A backbone and a report {source, sha256, arch, width, loaded, missing, unused, prefix}.

    ``checkpoint`` None gives the random-init floor of ``arch``/``width``. A cacl run folder or
    checkpoint brings its own arch and width; a foreign state dict's are read from its tensors'
    shapes (``arch``/``width`` only where the shapes cannot tell).
    """
    if checkpoint is None:
        return build_backbone(arch, width), {"source": "random init", "arch": arch, "width": width}
    path = find_checkpoint(Path(checkpoint))
    state, config = read_weights(path)
    return _backbone_from_state(state, config, path, arch, width)


def _backbone_from_state(
    state: dict, config: Config | None, path: Path, arch: str, width: int
) -> tuple[nn.Module, dict]:
    """The backbone in ``state`` (read from ``path``) and its report; its arch and width are its
    config's, else its tensors' shapes', else ``arch``/``width``."""
    if config is not None:
        arch, width = config.model.arch, config.model.width
    else:
        arch, width = shape_of(state) or (arch, width)
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
        "sha256": file_sha256(path),
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
    path = find_checkpoint(Path(checkpoint))
    state, config = read_weights(path)
    if config is None:
        backbone, report = _backbone_from_state(state, None, path, arch, width)
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
        "sha256": file_sha256(path),
        "arch": config.model.arch,
        "width": config.model.width,
        "heads": list(heads),
    }


LAYOUT = "layout.json"  # beside an exported backbone.pt: the network its tensors need


def layout_of(net: nn.Module, arch: str, width: int) -> dict:
    """What ``layout.json`` records for a backbone: arch, width, stride, and each convolution's
    stride, dilation and padding (``backbone.conv_layout``)."""
    return {"arch": arch, "width": width, "output_stride": OUTPUT_STRIDE,
            "convs": conv_layout(net)}  # fmt: skip


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
    differing = [k for k in expected if recorded.get(k) != expected[k]] if isinstance(
        recorded, dict) else ["the whole file"]  # fmt: skip
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
