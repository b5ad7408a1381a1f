"""The heads of CACL, one module each. A new head is a ``Head`` subclass in a module of its own
and one line in ``HEADS``."""

from cacl_cli.model.heads.base import DenseHead, Head, Maps, ProjectionHead, normalize_pixels
from cacl_cli.model.heads.cycle_head import CycleHead
from cacl_cli.model.heads.global_head import GlobalHead, global_vector
from cacl_cli.model.heads.pixel_head import PixelHead

# In the paper's order; a config's heads.* keys turn them on.
HEADS: dict[str, type[Head]] = {"global": GlobalHead, "pixel": PixelHead, "cycle": CycleHead}

__all__ = [
    "HEADS",
    "CycleHead",
    "DenseHead",
    "GlobalHead",
    "Head",
    "Maps",
    "PixelHead",
    "ProjectionHead",
    "global_vector",
    "normalize_pixels",
]
