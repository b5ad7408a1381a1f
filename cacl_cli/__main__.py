"""``python -m cacl_cli`` runs the same app as ``cacl`` (torchrun launches modules)."""

from cacl_cli.cli import main

main()
