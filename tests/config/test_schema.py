"""The schema: every key defined once, the shipped defaults.yaml rendered from it."""

import ast
import math

from cacl_cli.config import preset_dir, resolve, schema
from tests.conftest import ROOT


def test_the_shipped_defaults_file_is_the_schemas_rendering():
    """defaults.yaml is generated (``python -m cacl_cli.config``), so its defaults and comments
    cannot drift from the keys the code reads."""
    shipped = (preset_dir() / "defaults.yaml").read_text()
    fix = "python -m cacl_cli.config > presets/defaults.yaml"
    assert shipped == schema.render_defaults(), fix


def test_every_key_has_help_and_a_default_its_own_rule_accepts():
    for dotted, field in schema.KEYS.items():
        meta = field.metadata
        assert meta["help"].strip(), dotted
        assert not (meta["choices"] and meta["span"]), dotted
        if meta["choices"]:
            assert field.default in meta["choices"], dotted
        if meta["span"]:
            low, high = meta["span"]
            values = field.default if isinstance(field.default, tuple) else (field.default,)
            assert all(low <= v <= high for v in values), dotted
    assert resolve("defaults").plain() == {
        **schema.defaults_tree(),
        "preset": {"name": "defaults", "chain": ["defaults"]},
    }


def _section_keys() -> list[set[str]]:
    return [
        {schema.key_name(f.name) for f in schema.fields(kind)} for kind in schema.SECTIONS.values()
    ]


def test_no_class_outside_the_schema_restates_a_sections_keys():
    """An engine takes its section as it is: a dataclass elsewhere that repeats three or more
    keys of one section (with its own defaults) is a second home for them."""
    sections = _section_keys()
    found = []
    for path in (ROOT / "cacl_cli").rglob("*.py"):
        if path.parent.name == "config":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                fields = [s for s in node.body if isinstance(s, ast.AnnAssign)]
                names = {s.target.id for s in fields if isinstance(s.target, ast.Name)}
                if any(len(names & keys) >= 3 for keys in sections):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not found


def test_no_table_of_ranges_or_choices_outside_the_schema():
    """Choices and ranges are arguments of ``key(...)``; a dict of dotted keys elsewhere would be
    a second definition."""
    found = []
    for path in (ROOT / "cacl_cli").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Dict)
                and len(node.keys) >= 3
                and all(
                    isinstance(k, ast.Constant)
                    and k.value in schema.KEYS
                    and isinstance(v, ast.Tuple)  # (low, high) or ("a", "b")
                    for k, v in zip(node.keys, node.values)
                )
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found
    assert math.isinf(schema.span("run.log_every")[1])
