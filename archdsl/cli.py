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
from typing import Annotated

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
    list[str] | None,
    typer.Option("--param", "-p", help="Set a network parameter: NAME=VALUE (repeatable).", show_default=False),
]
InputOpt = Annotated[
    str | None,
    typer.Option("--input", help="Override the declared input shape, e.g. 3x224x224 (batch left out).", show_default=False),
]
NetworkOpt = Annotated[
    str | None,
    typer.Option("--network", "-n", help="Which network, when the spec defines several.", show_default=False),
]
ImportDirOpt = Annotated[
    list[Path] | None,
    typer.Option("--allow-import-dir", help="A folder that imports may also reach, besides the spec's own "
                 "folder (repeatable).", show_default=False),
]
MaxParamsOpt = Annotated[
    int | None,
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


def parse_params(items: list[str] | None, option: str = "--param") -> dict[str, object]:
    """``["classes=1000", "ratio=4"]`` to ``{"classes": 1000, "ratio": 4}``; ``option`` names them in errors."""
    from archdsl.resolve import parse_value

    params: dict[str, object] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name.strip()):
            raise UsageError(f"{option} takes NAME=VALUE, not '{item}'", hint=f"for example {option} classes=1000")
        try:
            params[name.strip()] = parse_value(value)
        except UsageError as err:
            raise UsageError(f"{option} {item}: {err.message}", hint=err.hint) from None
    return params


def parse_shape(text: str | None) -> tuple | None:
    """``3x224x224`` (or ``3,224,224``) to ``(3, 224, 224)``; ``1xHxW`` names symbolic sizes."""
    from archdsl.symbolic import Sym

    if text is None:
        return None
    shape: list = []
    for part in re.split(r"[×,]|(?<=\d)x|x(?=\d)|(?<=[A-Z])x(?=[A-Z])", text.strip()):
        part = part.strip()
        if re.fullmatch(r"\d+", part) and int(part) > 0:
            shape.append(int(part))
        elif re.fullmatch(r"[A-Z][A-Za-z0-9_]*", part):
            shape.append(Sym.symbol(part))
        else:
            raise UsageError(f"--input takes positive sizes like 3x224x224 (or size names, 1xHxW), not '{text}'")
    return tuple(shape)


def load_network(spec: Path, params: list[str] | None, network: str | None, input: str | None, max_params: int | None = None,
                 import_dirs: list[Path] | None = None):
    """Compile a spec from command-line options: the shared first step of every command."""
    from archdsl.compiled import load
    from archdsl.resolve import Limits

    limits = Limits(max_params=max_params) if max_params is not None else None
    return load(spec, network=network, input_shape=parse_shape(input), limits=limits, import_dirs=import_dirs,
                **parse_params(params))


@app.command("compile")
@reports_errors
def compile_command(
    spec: SpecArg,
    param: ParamOpt = None,
    input: InputOpt = None,
    network: NetworkOpt = None,
    depth: Annotated[int | None, typer.Option(help="Show blocks below this depth as one row each.", min=1)] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    emit: Annotated[str | None, typer.Option(help="Print the resolved IR instead: 'ir' (JSON) or 'text'.")] = None,
    max_params: MaxParamsOpt = None,
    allow_import_dir: ImportDirOpt = None,
) -> None:
    """Check a spec and print its per-layer shapes, parameters and MACs."""
    from archdsl import summary

    net = load_network(spec, param, network, input, max_params, allow_import_dir)
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


@app.command("graph")
@reports_errors
def graph_command(
    spec: SpecArg,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Where to write; the suffix picks the format: .svg, .png, .pdf or .dot "
                            "(default: NETWORK.svg here).", show_default=False)] = None,
    param: ParamOpt = None,
    input: InputOpt = None,
    network: NetworkOpt = None,
    depth: Annotated[int | None, typer.Option(
        help="Draw block calls nested this deep (top-level calls are 1) as one node each.", min=1)] = None,
    direction: Annotated[str, typer.Option(help="TB (top to bottom) or LR (left to right).")] = "TB",
    fold_activations: Annotated[bool, typer.Option(
        "--fold-activations/--separate-activations",
        help="Write an activation into the node of the layer before it, or draw it as a node of its own.")] = True,
    allow_import_dir: ImportDirOpt = None,
) -> None:
    """Draw a spec's network with Graphviz: layers, shapes on the edges, blocks as clusters."""
    from archdsl.graphviz_backend import save

    net = load_network(spec, param, network, input, import_dirs=allow_import_dir)
    path = out if out is not None else Path(f"{net.name}.svg")
    save(net.graph(depth, direction, fold_activations), path)
    print(f"wrote {path}")


@app.command("check")
def check_command(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to check.", show_default=False)],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print errors only.")] = False,
    allow_import_dir: ImportDirOpt = None,
    min_input: Annotated[bool, typer.Option(
        "--min-input", help="Print the smallest input each network accepts (from its symbolic shapes, confirmed "
        "by concrete inference) and where its flattened size changes.")] = False,
    param: ParamOpt = None,
    network: NetworkOpt = None,
) -> None:
    """Report errors in specs (every network at its defaults, every block's names); exit 1 if any."""
    from archdsl.check import check_file, minimum_report

    failed = 0
    for spec in specs:
        try:
            if min_input:
                message = minimum_report(spec, allow_import_dir, network, parse_params(param))
            else:
                message = check_file(spec, allow_import_dir)
        except ArchError as err:
            failed += 1
            print(err.render(), file=sys.stderr)
            continue
        if not quiet:
            print(message)
    if failed:
        raise typer.Exit(1)


@app.command("fmt")
def fmt_command(
    specs: Annotated[list[Path], typer.Argument(help="Spec files to format.", show_default=False)],
    check: Annotated[bool, typer.Option("--check", help="Change nothing; list the files that would change, exit 1 if any.")] = False,
    write: Annotated[bool, typer.Option("--write", "-w", help="Rewrite the files in place (atomically).")] = False,
) -> None:
    """Print specs in the canonical style, comments kept (or --check them, or --write them back)."""
    from archdsl.formatter import format_source
    from archdsl.program import read_source

    if check and write:
        print(UsageError("--check and --write exclude each other").render(), file=sys.stderr)
        raise typer.Exit(1)
    failed = False
    for spec in specs:
        try:
            source = read_source(spec)
            formatted = format_source(source)
            if formatted == source.text:
                if not (check or write):
                    print(formatted, end="")
            elif check:
                print(f"would reformat {spec}")
                failed = True
            elif write:
                _rewrite(spec, formatted)
                print(f"reformatted {spec}")
            else:
                print(formatted, end="")
        except ArchError as err:
            print(err.render(), file=sys.stderr)
            failed = True
    if failed:
        raise typer.Exit(1)


def _rewrite(path: Path, text: str) -> None:
    """Replace a file's text atomically, keeping its permissions: the old file or the new, never half."""
    import shutil

    from archdsl.atomic import write_atomic

    def fill(tmp: Path) -> None:
        tmp.write_bytes(text.encode("utf-8"))
        shutil.copymode(path, tmp)

    write_atomic(path, fill)


@app.command("export")
@reports_errors
def export_command(
    spec: SpecArg,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="The file to write.", show_default=False)],
    to: Annotated[str | None, typer.Option(
        metavar="python|onnx|torchscript",
        help="The format. Default: from the suffix of FILE (.py, .onnx, .pt).", show_default=False)] = None,
    param: ParamOpt = None,
    input: InputOpt = None,
    network: NetworkOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(
        metavar="RUN_DIR", help="Export the weights of this `archdsl train` run (its newest finished epoch); "
        "with --to python they go to FILE's name with .safetensors.", show_default=False)] = None,
    allow_import_dir: ImportDirOpt = None,
) -> None:
    """Write a network as standalone PyTorch source, ONNX or TorchScript."""
    from archdsl.export import export, format_for

    to = format_for(to, out)
    net = load_network(spec, param, network, input, import_dirs=allow_import_dir)
    print(export(net, to, out, checkpoint).describe())


@app.command("compare")
@reports_errors
def compare_command(
    spec: SpecArg,
    other: Annotated[Path | None, typer.Argument(
        metavar="[OTHER]", help="A second spec (B). Default: SPEC again, with --param-b / --input-b.",
        show_default=False)] = None,
    param: ParamOpt = None,
    param_a: Annotated[list[str] | None, typer.Option(
        "--param-a", metavar="NAME=VALUE", help="A parameter of A only (repeatable).", show_default=False)] = None,
    param_b: Annotated[list[str] | None, typer.Option(
        "--param-b", metavar="NAME=VALUE", help="A parameter of B only (repeatable).", show_default=False)] = None,
    input: InputOpt = None,
    input_a: Annotated[str | None, typer.Option("--input-a", metavar="CxHxW", help="A's input shape.",
                                                   show_default=False)] = None,
    input_b: Annotated[str | None, typer.Option("--input-b", metavar="CxHxW", help="B's input shape.",
                                                   show_default=False)] = None,
    network: NetworkOpt = None,
    reference: Annotated[str | None, typer.Option(
        metavar="MODULE:FACTORY", help="Check SPEC against a Python model: a class or factory returning an "
        "nn.Module (references:vgg11, torchvision.models:resnet18).", show_default=False)] = None,
    reference_path: Annotated[list[Path] | None, typer.Option(
        metavar="DIR", help="A folder to import the reference from (repeatable; the current folder is searched "
        "last).", show_default=False)] = None,
    reference_arg: Annotated[list[str] | None, typer.Option(
        metavar="NAME=VALUE", help="A keyword argument of the reference's factory (repeatable).",
        show_default=False)] = None,
    load_weights: Annotated[bool, typer.Option(
        "--load-weights", help="Copy the reference's weights into the spec's module (by position, shapes "
        "checked) and compare the outputs.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    allow_import_dir: ImportDirOpt = None,
) -> None:
    """Compare two networks' parameters and MACs per layer family, or a spec with a Python model."""
    from archdsl import compare

    if reference is not None:
        if other is not None or param_a or param_b or input_a or input_b:
            raise UsageError("--reference compares one spec with a Python model; it takes no OTHER, --param-a/-b "
                             "or --input-a/-b", hint="use --param and --input to set the spec")
        net = load_network(spec, param, network, input, import_dirs=allow_import_dir)
        data = compare.against_reference(net, reference, reference_path or [],
                                         parse_params(reference_arg, "--reference-arg"), load_weights)
        print(json.dumps(data, indent=1) if json_ else compare.render_reference(data), end="\n" if json_ else "")
        return
    if load_weights or reference_path or reference_arg:
        raise UsageError("--load-weights, --reference-path and --reference-arg go with --reference")
    if other is None and not (param_b or input_b or param_a or input_a):
        raise UsageError("compare needs a second spec, or --param-b / --input-b to compare SPEC with itself",
                         hint="for example: archdsl compare specs/vgg11.arch --param-b ratio=4")
    a = load_network(spec, [*(param or []), *(param_a or [])], network, input_a or input, import_dirs=allow_import_dir)
    b = load_network(other or spec, [*(param or []), *(param_b or [])], network, input_b or input,
                     import_dirs=allow_import_dir)
    data = compare.side_by_side(a, b)
    print(json.dumps(data, indent=1) if json_ else compare.render_side_by_side(data), end="\n" if json_ else "")


@app.command("layers")
def layers_command() -> None:
    """List the layer kinds, their arguments and defaults."""
    from archdsl.layers import describe_kinds

    print(describe_kinds())


def _register_runner() -> None:
    """``train`` and ``eval`` live with the runner (archdsl/runner/commands.py); they import torch only when run."""
    from archdsl.runner import commands

    commands.register(app)


_register_runner()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
