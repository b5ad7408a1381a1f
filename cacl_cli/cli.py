"""The ``cacl`` command line: one Typer app, one thin module per command."""

from __future__ import annotations

import contextlib
import io
import sys
from importlib import metadata

import typer

from cacl_cli.commands import (
    export,
    extract_pairs,
    finetune,
    presets,
    pretrain,
    probe,
    propagate,
    visualize,
    world,
)
from cacl_cli.memory import reuse_freed_memory

DISTRIBUTION = "cacl-video"  # what pip installs; the command stays `cacl`

# Click's exception classes, wherever this typer keeps its click (the click package, or its own
# copy since typer 0.2x): found through the one typer re-exports.
UsageError, ClickException = (
    next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)
    for name in ("UsageError", "ClickException")
)


class OneLineErrors(typer.core.TyperGroup):
    """The option parser's own refusals (a bad number, an extra argument, a value out of range)
    as one ``error:`` line and exit 2, like the app's own, instead of click's usage box."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except UsageError as err:
            if type(err).__name__ == "NoArgsIsHelpError":  # no arguments: the help page
                err.show()
                sys.exit(err.exit_code)
            where = err.ctx.command_path if err.ctx is not None else "cacl"
            message = " ".join(err.format_message().split())
            print(f"error: {where}: {message} (see {where} --help)", file=sys.stderr)
            sys.exit(2)
        except ClickException as err:
            err.show()
            sys.exit(err.exit_code)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="cacl",
    cls=OneLineErrors,
    help="Cycle-Attention Contrastive Learning: learn segmentation features from unlabeled video.",
    # Help is printed as written: no markup, so "[default: ...]" and the like read whole, in a
    # terminal of any width and when piped.
    rich_markup_mode=None,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"cacl {version()} ({DISTRIBUTION})")
        raise typer.Exit()


@app.callback()
def _options(
    show_version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Cycle-Attention Contrastive Learning: learn segmentation features from unlabeled video."""
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not UTF-8 is printed as its own bytes, where a strict stream (any
        # locale but C and UTF-8 mode) would fail the command on the name.
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors="surrogateescape")


app.command("extract-pairs")(extract_pairs.extract_pairs_command)
app.command("pretrain")(pretrain.pretrain_command)
app.command("probe")(probe.probe_command)
app.command("finetune")(finetune.finetune_command)
app.command("visualize", cls=visualize.VisualizeCommand)(visualize.visualize_command)
app.command("propagate")(propagate.propagate_command)
app.command("export")(export.export_command)
app.command("presets")(presets.presets_command)
app.command("world")(world.world_command)


REFERENCE_HEADER = """# Commands and their options

Every command's help page, as `cacl COMMAND --help` prints it. Options that set a
preset key say which (`sets propagate.topk`) and the value the command's default preset gives
it; `--set KEY=VALUE` reaches every key (the last section lists them, as `presets/defaults.yaml`
does). Generated from the app by `make docs` (tests/test_cli.py fails when this page and the
app differ).
"""


def reference_page(width: int = 100) -> str:
    """docs/commands.md: each command's help page, in the order ``cacl --help`` lists them."""
    from typer.testing import CliRunner

    from cacl_cli.config.schema import render_defaults

    parts = [REFERENCE_HEADER]
    for command in app.registered_commands:
        page = CliRunner().invoke(app, [command.name, "--help"], env={"COLUMNS": str(width)})
        parts.append(f"## cacl {command.name}\n\n```\n{page.output.rstrip()}\n```\n")
    parts.append(f"## Every preset key\n\n```yaml\n{render_defaults().rstrip()}\n```\n")
    return "\n".join(parts)


def main() -> None:
    reuse_freed_memory()  # large tensors come and go every step: keep their pages
    app()
