"""The command line as a whole: fast refusal, thin commands, imports that only point down."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "cacl_cli"
# Lower layers never import higher ones (commands -> engines -> model/data -> infrastructure).
LAYERS = {
    "commands": 3,
    "cli": 3,
    "api": 3,
    "__main__": 3,
    "training": 2,
    "evaluate": 2,
    "pretrained": 2,
    "model": 1,
    "data": 1,
}


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.get(parts[1], 0) if len(parts) > 1 else 0


def _imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cacl_cli"):
            found += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("cacl_cli")]
    return found


def test_no_module_imports_a_higher_layer():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = "cacl_cli." + ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for target in _imports(path):
            if _layer(target) > _layer(module):
                upward.append(f"{module} imports {target}")
    assert not upward


def test_command_modules_have_no_twin_at_the_top_of_the_package():
    commands = {p.stem for p in (PACKAGE / "commands").glob("*.py")} - {"__init__", "options"}
    assert not {p.stem for p in PACKAGE.glob("*.py")} & commands


def test_every_command_body_is_short():
    for path in (PACKAGE / "commands").glob("*.py"):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.endswith("_command"):
                body = node.body[1:] if ast.get_docstring(node) else node.body
                lines = body[-1].end_lineno - body[0].lineno + 1
                assert lines <= 25, f"{path.name}: {node.name} body is {lines} lines"


def _calls(path: Path, names: set[str]) -> list[str]:
    """``path:line`` of every call in ``path`` to one of the dotted ``names`` (``torch.load``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func) in names:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)}")
    return found


def test_tensor_files_are_read_only_by_the_checkpoint_module():
    """Checkpoints, state dicts and caches are all read by ``checkpoint.read_tensors``, so one
    place decides that no file runs code when read (``weights_only``) and how a bad one is named."""
    scripts = [*PACKAGE.rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    readers = {PACKAGE / "checkpoint.py"}
    assert not [c for p in scripts if p not in readers for c in _calls(p, {"torch.load"})]


def test_image_files_are_decoded_only_by_the_image_readers():
    decoders = {
        "cv2.imread",
        "cv2.imdecode",
        "Image.open",
        "PIL.Image.open",
        "torchvision.io.read_image",
        "torchvision.io.decode_image",
    }
    readers = {PACKAGE / "data" / "images.py", PACKAGE / "data" / "segmentation.py"}
    scripts = [*PACKAGE.rglob("*.py"), *(ROOT / "bench").glob("*.py")]
    assert not [c for p in scripts if p not in readers for c in _calls(p, decoders)]


def test_no_function_in_the_package_is_over_60_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert not long


def test_a_bad_key_is_refused_before_torch_is_imported():
    code = (
        "import sys\n"
        "from cacl_cli.cli import app\n"
        "try:\n"
        "    app(['pretrain', '--set', 'optim.lrr=1'])\n"
        "except SystemExit as stop:\n"
        "    print('exit', stop.code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.stdout.strip() == "exit 2 False"
    assert done.stderr.strip() == (
        "error: --set: unknown key 'optim.lrr' (did you mean 'optim.lr'?)"
    )


@pytest.mark.parametrize("command", ["propagate", "extract-pairs", "export", "world"])
def test_every_command_takes_presets_and_refuses_a_bad_key(tmp_path, command):
    from tests.conftest import run_cacl

    done = run_cacl(command, tmp_path, "--set", "propagate.topkk=3")
    assert done.returncode == 2
    assert "unknown key 'propagate.topkk' (did you mean 'propagate.topk'?)" in done.stderr


def test_propagate_flags_set_preset_keys_that_reach_the_results(tmp_path, shared_data):
    from tests.conftest import run_cacl

    out = tmp_path / "prop"
    done = run_cacl(
        "propagate",
        shared_data / "davis",
        "--random-init",
        "--width",
        "8",
        "--topk",
        "3",
        "--frames",
        "3",
        "--size",
        "64",
        "--out",
        out,
    )
    assert done.returncode == 0, done.stderr
    protocol = __import__("json").loads((out / "results.json").read_text())["protocol"]
    assert protocol["topk"] == 3 and protocol["short_side"] == 64 and protocol["frames"] == 3


def test_version_names_the_distribution():
    from cacl_cli.cli import DISTRIBUTION, version
    from tests.conftest import run_cacl

    done = run_cacl("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"cacl {version()} ({DISTRIBUTION})"
    assert version()[0].isdigit()  # installed under its distribution name


def test_every_command_help_shows_an_example_and_the_shared_options():
    from cacl_cli.cli import app
    from tests.conftest import run_cacl

    commands = [c.name for c in app.registered_commands]
    assert len(commands) == 9
    for command in commands:
        shown = run_cacl(command, "--help")
        assert shown.returncode == 0 and "Example: cacl " + command in shown.stdout, command
    for command in ("probe", "finetune", "visualize", "propagate"):  # each builds a model
        shown = run_cacl(command, "--help").stdout
        assert "--random-init" in shown and "--device" in shown, command
    assert "--pixels" not in run_cacl("visualize", "--help").stdout  # one name: --pixel


def test_every_subpackage_ships_in_the_wheel():
    """pyproject lists the packages by name: a new folder of modules must be listed there too."""
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        "cacl_cli." + ".".join(p.parent.relative_to(PACKAGE).parts)
        for p in PACKAGE.rglob("__init__.py")
    } | {"cacl_cli"}
    found = {name.rstrip(".") for name in found}
    assert found <= set(setuptools["packages"])


def test_the_commands_page_is_the_apps_own_help():
    from cacl_cli.cli import reference_page

    fix = "python -c \"from cacl_cli.cli import reference_page; print(reference_page(), end='')\""
    page = (ROOT / "docs" / "commands.md").read_text()
    assert page == reference_page(), f"{fix} > docs/commands.md"
