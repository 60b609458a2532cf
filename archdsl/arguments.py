"""The command-line arguments that several commands share, and their parsing into what the API takes.

``archdsl.cli`` and the runner's commands (``archdsl/runner/commands.py``) both build on these, so a
spec, its parameters, its network and its input read the same in every command.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import click

from archdsl.errors import UsageError

PATH = click.Path(path_type=Path)  # existence is the command's to check: a missing spec is a diagnostic


# Decorators, each usable on any number of commands (click makes a new parameter at each use).
spec_argument = click.argument("spec", type=PATH, metavar="SPEC")
param_option = click.option("--param", "-p", multiple=True, metavar="NAME=VALUE",
                            help="Set a network parameter (repeatable).")
input_option = click.option("--input", metavar="CxHxW",
                            help="Override the declared input shape, e.g. 3x224x224 (batch left out; 1xHxW for "
                                 "symbolic sizes).")
network_option = click.option("--network", "-n", metavar="NAME", help="Which network, when the spec defines several.")
import_dir_option = click.option(
    "--allow-import-dir", multiple=True, metavar="DIR", type=click.Path(path_type=Path, exists=True, file_okay=False),
    help="A folder that imports may also reach, besides the spec's own folder (repeatable).")
max_params_option = click.option("--max-params", type=int, metavar="N",
                                 help="Refuse networks with more parameters than this (default: what fits in memory).")


def parse_params(items: Sequence[str] | None, option: str = "--param") -> dict[str, object]:
    """``["classes=1000", "ratio=4"]`` to ``{"classes": 1000, "ratio": 4}``; ``option`` names them in errors."""
    from archdsl.resolve import parse_value

    params: dict[str, object] = {}
    given: dict[str, str] = {}  # name -> the item that set it
    for item in items or ():
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"{option} takes NAME=VALUE, not '{_clip(item)}'", hint=f"for example {option} classes=1000")
        if name in given:
            raise UsageError(f"{option} sets '{name}' twice: {_clip(given[name])}, then {_clip(item)}",
                             hint="give each parameter once")
        given[name] = item
        try:
            params[name] = parse_value(value)
        except UsageError as err:
            raise UsageError(f"{option} {_clip(item)}: {err.message}", hint=err.hint) from None
    return params


def parse_shape(text: str | None) -> tuple | None:
    """``3x224x224`` (or ``3,224,224``) to ``(3, 224, 224)``; ``1xHxW`` names symbolic sizes."""
    from archdsl.errors import LimitError
    from archdsl.symbolic import Sym
    from archdsl.values import literal

    if text is None:
        return None
    shape: list = []
    for part in re.split(r"[×,]|(?<=\d)x|x(?=\d)|(?<=[A-Z])x(?=[A-Z])", text.strip()):
        part = part.strip()
        if re.fullmatch(r"[A-Z][A-Za-z0-9_]*", part):
            shape.append(Sym.symbol(part))
            continue
        if not re.fullmatch(r"\d+", part) or not part.strip("0"):
            raise UsageError(f"--input takes positive sizes like 3x224x224 (or size names, 1xHxW), not '{_clip(text)}'")
        try:
            shape.append(literal(part))
        except LimitError as err:
            raise UsageError(f"--input {_clip(text)}: {err.message}", hint=err.hint) from None
    return tuple(shape)


def _clip(text: str, width: int = 60) -> str:
    """Text from the command line, shortened to ``width`` characters for a message."""
    return text if len(text) <= width else f"{text[:width - 3]}..."


def load_network(spec: Path, params: Sequence[str] | None, network: str | None, input: str | None,
                 max_params: int | None = None, import_dirs: Sequence[Path] | None = None):
    """Compile a spec from command-line options: the shared first step of every command."""
    from archdsl.compiled import load

    shape = parse_shape(input)
    net = load(spec, network=network, input_shape=shape, limits=limits_of(max_params),
               import_dirs=import_dirs, **parse_params(params))
    if shape is not None:
        check_input_channels(net, input)
    return net


def check_input_channels(net, given: str) -> None:
    """--input may change an image's height and width, not the channels the network declares: those are
    what its parameters (``in_channels``) and its first layers were written for, so a contradiction is an
    error at the declaration, naming the parameter to set instead.

        network lenet(in_channels = 1) : [in_channels, 28, 28] = ...     --input 3x28x28: refused
    """
    from archdsl import ir
    from archdsl.resolve import choose_network, input_of

    declared = input_of(net.program, net.name, net.param_values)
    channels = net.input_shape[0]
    if len(declared) != 3 or len(net.input_shape) != 3 or not isinstance(declared[0], int):
        return  # not an image, or channels the declaration leaves symbolic ([C, H, W]): --input gives them
    if not isinstance(channels, int) or channels == declared[0]:
        return
    expr = choose_network(net.program, net.name).input[0]
    bound = isinstance(expr, ir.Var) and expr.name in net.param_values
    raise UsageError(
        f"--input {_clip(given)} gives {channels} channels, but network {net.name} declares {declared[0]}"
        + (f" ({expr.name}={declared[0]})" if bound else ""),
        expr.span,
        hint=(f"pass --param {expr.name}={channels}, which sets the input's channels" if bound
              else f"give --input {declared[0]} channel{'s' if declared[0] != 1 else ''}, or change the declaration"),
    )


def load_network_as_run(spec: Path, params: Sequence[str] | None, network: str | None, input: str | None,
                        run, import_dirs: Sequence[Path] | None = None):
    """Compile a spec for a run of ``archdsl train`` (its run.json's ``spec``: a runfolder.SpecArgs):
    --param, --network and --input default to the run's own, so its checkpoints fit."""
    return load_network(spec, params or run.params, network or run.network, input or run.input,
                        import_dirs=import_dirs)


def limits_of(max_params: int | None):
    """The resolver's limits with --max-params (None: the defaults)."""
    from archdsl.resolve import Limits

    if max_params is None:
        return None
    if max_params < 1:
        raise UsageError(f"--max-params must be at least 1, not {max_params}")
    return Limits(max_params=max_params)
