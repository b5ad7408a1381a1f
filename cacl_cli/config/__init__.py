"""Presets and the config they resolve to: ``schema`` (every key once), ``presets`` (finding,
layering, ``--set``, validation), ``rules`` (rules between keys, default presets, resume)."""

from cacl_cli.config.presets import (
    DEFAULTS_NAME,
    dump,
    from_saved,
    parse_override,
    preset_description,
    preset_dir,
    preset_names,
    resolve,
    section,
    write_config,
)
from cacl_cli.config.rules import DEFAULT_PRESETS, SAFE_ON_RESUME, check_run, resumed_config
from cacl_cli.config.schema import (
    SECTIONS,
    AugmentSection,
    Config,
    DataSection,
    EvalSection,
    ExtractSection,
    HeadsSection,
    LossSection,
    MocoSection,
    ModelSection,
    OptimSection,
    PresetInfo,
    PropagateSection,
    RunSection,
    ScheduleSection,
    WorldSection,
)

__all__ = [
    "DEFAULTS_NAME", "DEFAULT_PRESETS", "SAFE_ON_RESUME", "SECTIONS", "AugmentSection", "Config",
    "DataSection", "EvalSection", "ExtractSection", "HeadsSection", "LossSection", "MocoSection",
    "ModelSection", "OptimSection", "PresetInfo", "PropagateSection", "RunSection",
    "ScheduleSection", "WorldSection", "check_run", "dump", "from_saved", "parse_override",
    "preset_description", "preset_dir", "preset_names", "resolve", "resumed_config", "section",
    "write_config",
]  # fmt: skip
