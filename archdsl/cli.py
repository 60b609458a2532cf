"""The ``archdsl`` command: argument parsing and the rendering of ArchError, no logic of its own.

Every command reports a user's mistake as one diagnostic on stderr and exits with status 1;
anything else escaping is a bug and shows as one.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from archdsl.errors import ArchError, UsageError

app = typer.Typer(
    name="archdsl",
    help="Describe, check, draw and train neural-network architectures written in the archdsl language.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

SpecArg = Annotated[Path, typer.Argument(help="The .arch spec file.", show_default=False)]
ParamOpt = Annotated[
    Optional[list[str]],
    typer.Option("--param", "-p", help="Set a network parameter: NAME=VALUE (repeatable).", show_default=False),
]
InputOpt = Annotated[
    Optional[str],
    typer.Option("--input", help="Override the declared input shape, e.g. 3x224x224 (batch left out).", show_default=False),
]
NetworkOpt = Annotated[
    Optional[str],
    typer.Option("--network", "-n", help="Which network, when the spec defines several.", show_default=False),
]
MaxParamsOpt = Annotated[
    Optional[int],
    typer.Option("--max-params", help="Refuse networks with more parameters than this (default: what fits in memory).",
                 show_default=False),
]


def reports_errors(command):
    """Print an ArchError as its diagnostic and exit 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ArchError as err:
            print(err.render(), file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper


def parse_params(items: list[str] | None) -> dict[str, object]:
    """``["classes=1000", "ratio=4"]`` to ``{"classes": 1000, "ratio": 4}``."""
    from archdsl.resolve import parse_value

    params: dict[str, object] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise UsageError(f"--param takes NAME=VALUE, not '{item}'", hint="for example --param classes=1000")
        params[name.strip()] = parse_value(value)
    return params


def parse_shape(text: str | None) -> tuple[int, ...] | None:
    """``3x224x224`` (or ``3,224,224``) to ``(3, 224, 224)``."""
    if text is None:
        return None
    parts = re.split(r"[x×,]", text.strip().lower())
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(f"--input takes sizes like 3x224x224, not '{text}'") from None
    if any(d <= 0 for d in shape):
        raise UsageError(f"--input sizes must be positive, not '{text}'")
    return shape


def load_network(spec: Path, params: list[str] | None, network: str | None, input: str | None, max_params: int | None = None):
    """Compile a spec from command-line options: the shared first step of every command."""
    from archdsl.compiled import load
    from archdsl.resolve import Limits

    limits = Limits(max_params=max_params) if max_params is not None else None
    return load(spec, network=network, input_shape=parse_shape(input), limits=limits, **parse_params(params))


@app.command("compile")
@reports_errors
def compile_command(
    spec: SpecArg,
    param: ParamOpt = None,
    input: InputOpt = None,
    network: NetworkOpt = None,
    depth: Annotated[Optional[int], typer.Option(help="Show blocks below this depth as one row each.", min=1)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    emit: Annotated[Optional[str], typer.Option(help="Print the resolved IR instead: 'ir' (JSON) or 'text'.")] = None,
    max_params: MaxParamsOpt = None,
) -> None:
    """Check a spec and print its per-layer shapes, parameters and MACs."""
    from archdsl import summary

    net = load_network(spec, param, network, input, max_params)
    if emit == "ir":
        print(net.ir.model_dump_json(indent=1))
    elif emit == "text":
        print(net.text())
    elif emit is not None:
        raise UsageError(f"--emit takes 'ir' or 'text', not '{emit}'")
    elif json_:
        print(json.dumps(summary.as_json(net.ir, depth), indent=1))
    else:
        print(summary.render_text(net.ir, depth), end="")


@app.command("check")
def check_command(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.", show_default=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
) -> None:
    """Report errors in specs (every network at its defaults, every block's names); exit 1 if any."""
    from archdsl.check import check_file

    failed = 0
    for spec in specs:
        try:
            message = check_file(spec)
        except ArchError as err:
            failed += 1
            print(err.render(), file=sys.stderr)
            continue
        if not quiet:
            print(message)
    if failed:
        raise typer.Exit(1)


@app.command("layers")
def layers_command() -> None:
    """List the layer kinds, their arguments and defaults."""
    from archdsl.layers import describe_kinds

    print(describe_kinds())


def main() -> None:
    app()


if __name__ == "__main__":
    main()
