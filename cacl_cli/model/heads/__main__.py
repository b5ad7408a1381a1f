"""``python -m cacl_cli.model.heads > cacl_cli/config/head_keys.py``: the heads' own keys,
rendered where the config reads them (a test checks that the shipped file is this rendering)."""

import sys

from cacl_cli.model.heads import render_head_keys

sys.stdout.write(render_head_keys())
