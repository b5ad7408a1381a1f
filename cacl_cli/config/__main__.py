"""``python -m cacl_cli.config > presets/defaults.yaml``: the defaults file, rendered from the
schema (a test checks that the shipped one is this rendering)."""

import sys

from cacl_cli.config.schema import render_defaults

sys.stdout.write(render_defaults())
