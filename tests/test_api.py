"""The public API: what it lists exists, and the benchmarks use nothing else of the package."""

import ast

import numpy as np
import pytest

import cacl_cli.api as api
from tests.conftest import ROOT

# Code that loads another commit's package to time or compare it reaches that package's own
# modules, whatever they were then: the harness itself and davis_speed's timed child.
OTHER_TREES = {("step_harness.py", None), ("davis_speed.py", "child")}


def _package_imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cacl_cli"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("cacl_cli")]
    return found


def _checked_parts(path) -> list[ast.AST]:
    """The file, less the functions that load another commit's package."""
    tree = ast.parse(path.read_text())
    if (path.name, None) in OTHER_TREES:
        return []
    skipped = {name for file, name in OTHER_TREES if file == path.name}
    return [
        node
        for node in tree.body
        if not (isinstance(node, ast.FunctionDef) and node.name in skipped)
    ]


def test_every_listed_name_exists():
    assert all(hasattr(api, name) for name in api.__all__)
    assert len(set(api.__all__)) == len(api.__all__)


def test_benchmarks_use_only_the_command_and_the_public_api():
    reaching = []
    for path in sorted((ROOT / "bench").glob("*.py")):
        for part in _checked_parts(path):
            for module, names in _package_imports(part):
                if module == "cacl_cli.api" and set(names) <= set(api.__all__):
                    continue
                if (module, names) in (("cacl_cli", ["cli"]), ("cacl_cli.cli", [])):
                    continue
                reaching.append(f"bench/{path.name}: {module} {names}")
    assert not reaching


def test_a_script_takes_features_of_a_world_frame_with_the_public_names_alone():
    cfg = api.resolve("tiny-world", ["model.width=8"])
    frame, later = api.World(cfg.world).pair(np.random.default_rng(0), cfg.data.stride)
    backbone, report = api.load_backbone(None, cfg.model.arch, cfg.model.width)
    features = backbone.eval()(api.to_input(frame, 64))
    assert report["arch"] == cfg.model.arch and frame.shape == later.shape
    assert features.shape[0] == 1 and features.shape[-2:] == (64 // 8, 64 // 8)


def test_the_extraction_and_probe_internals_are_not_public():
    internals = {"assign_ids", "process_clip", "write_index", "merge", "train_probe", "prepare"}
    assert not internals & set(api.__all__)
    assert all(not hasattr(api, name) for name in internals)


@pytest.mark.slow  # a TINY pretrain in a process of its own
def test_the_readmes_script_takes_a_runs_backbone_features_of_a_frame(tmp_path, monkeypatch):
    from PIL import Image

    from tests.conftest import pretrained

    pretrained(tmp_path / "runs" / "mine")
    pixels = np.random.default_rng(0).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "frame.jpg")
    monkeypatch.chdir(tmp_path)
    backbone, report = api.load_backbone("runs/mine", "resnet18", 64)
    features = backbone.eval()(api.to_input(api.read_rgb("frame.jpg"), 240))
    assert report["loaded"] > 0 and report["source"].startswith("runs/mine")
    assert features.shape[-2:] == (240 // 8, 320 // 8)
