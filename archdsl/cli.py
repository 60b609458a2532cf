"""The ``archdsl`` command: argument parsing and the rendering of ArchError, no logic of its own.

Every command reports a user's mistake as one diagnostic on stderr and exits with status 1;
anything else escaping is a bug and shows as one.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from pathlib import Path

import click

from archdsl import zoo
from archdsl.arguments import (
    PATH,
    import_dir_option,
    input_option,
    limits_of,
    load_network,
    load_network_as_run,
    max_params_option,
    network_option,
    param_option,
    parse_params,
    spec_argument,
)
from archdsl.errors import ArchError, UsageError
from archdsl.export import FORMATS
from archdsl.extras import required

# click rather than typer: typer builds a pydantic validator for every option of every command on
# each start, about 50 ms that `archdsl compile` would spend before reading a byte of the spec.


def _diagnostic(err: ArchError) -> str:
    """An error as printed: a mistake in a spec (FILE:LINE:COL) ends its first line with its code (``[A101]``,
    which `archdsl explain` tells more of); a mistake on the command line reads as a plain usage error, except
    in `archdsl check`, the command for editors and CI, which tags every error with its code."""
    return err.render(with_code=err.span is not None)


class _Commands(click.Group):
    """The archdsl command group: an ArchError that escapes any command, its own or the runner's, is
    printed as its diagnostic and ends the process with status 1; so is a package missing that one of
    archdsl's extras brings (torch for train, say), with the extra to install."""

    def invoke(self, ctx: click.Context):
        try:
            with required():
                return super().invoke(ctx)
        except ArchError as err:
            print(_diagnostic(err), file=sys.stderr)
            sys.exit(1)


@click.group(
    name="archdsl",
    cls=_Commands,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="archdsl", prog_name="archdsl", message="%(prog)s %(version)s")
def app() -> None:
    """Describe, check, draw and train neural-network architectures written in the archdsl language."""


@app.command("compile", short_help="Check a spec; print per-layer shapes, params and MACs.")
@spec_argument
@param_option
@input_option
@network_option
@click.option("--depth", type=click.IntRange(min=1), metavar="N", help="Show blocks below this depth as one row each.")
@click.option("--json", "json_", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--emit", type=click.Choice(["ir", "text"]), help="Print the resolved IR instead: 'ir' (JSON) or 'text'.")
@max_params_option
@import_dir_option
def compile_command(spec: Path, param: tuple[str, ...], input: str | None, network: str | None, depth: int | None,
                    json_: bool, emit: str | None, max_params: int | None, allow_import_dir: tuple[Path, ...]) -> None:
    """Check SPEC (an .arch file, or a network of the zoo by name: `archdsl zoo` lists them) and print its
    per-layer shapes, parameters and MACs."""
    from archdsl import summary

    if emit is not None and json_:
        raise UsageError("--emit and --json each choose the output; give one of them",
                         hint="--emit ir is JSON already; --json is the summary as JSON")
    net = load_network(spec, param, network, input, max_params, allow_import_dir)
    if emit == "ir":
        print(net.ir.model_dump_json(indent=1))
    elif emit == "text":
        print(net.text())
    elif json_:
        print(json.dumps(summary.as_json(net.ir, depth), indent=1))
    else:
        print(summary.render_text(net.ir, depth), end="")


@app.command("graph", short_help="Draw a spec's network with Graphviz.")
@spec_argument
@click.option("--out", "-o", type=PATH, metavar="FILE",
              help="Where to write; the suffix picks the format: .svg, .png, .pdf or .dot (default: NETWORK.svg here). "
                   "'-' is standard output.")
@click.option("--format", "fmt", type=click.Choice(["svg", "png", "pdf", "dot"]),
              help="The format, where FILE's suffix does not say (default for '-': svg).")
@param_option
@input_option
@network_option
@click.option("--depth", type=click.IntRange(min=1), metavar="N",
              help="Draw block calls nested this deep (top-level calls are 1) as one node each.")
@click.option("--direction", type=click.Choice(["TB", "LR"], case_sensitive=False), default="TB", show_default=True,
              help="Top to bottom or left to right.")
@click.option("--fold-activations/--separate-activations", default=True, show_default=True,
              help="Write an activation into the node of the layer before it, or draw it as a node of its own.")
@import_dir_option
def graph_command(spec: Path, out: Path | None, fmt: str | None, param: tuple[str, ...], input: str | None,
                  network: str | None, depth: int | None, direction: str, fold_activations: bool,
                  allow_import_dir: tuple[Path, ...]) -> None:
    """Draw the network of SPEC with Graphviz: layers, shapes on the edges, blocks as clusters."""
    from archdsl.graphviz_backend import save

    net = load_network(spec, param, network, input, import_dirs=allow_import_dir)
    path = out if out is not None else Path(f"{net.name}.{fmt or 'svg'}")
    save(net.graph(depth, direction, fold_activations), path, net.source_files, fmt)
    _report(path, f"wrote {path}")


@app.command("check", short_help="Report every error in specs (or their smallest inputs).")
@click.argument("specs", nargs=-1, required=True, type=PATH, metavar="SPEC...")
@click.option("--quiet", "-q", is_flag=True, help="Print errors only.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github", "sarif"]), default="text",
              show_default=True, help="How to print the errors: text, one JSON object, GitHub workflow annotations, "
                                      "or SARIF 2.1.0 for code scanning.")
@import_dir_option
@click.option("--min-input", is_flag=True,
              help="Print the smallest input each network accepts (from its symbolic shapes, confirmed by concrete "
                   "inference) and where its flattened size changes.")
@param_option
@network_option
@max_params_option
def check_command(specs: tuple[Path, ...], quiet: bool, fmt: str, allow_import_dir: tuple[Path, ...], min_input: bool,
                  param: tuple[str, ...], network: str | None, max_params: int | None) -> None:
    """Report every error in each SPEC (every network, or the --network, at its defaults and the --param values;
    every call of every block); exit 1 if any. A SPEC may be a folder (its .arch files, recursively), '-' for
    standard input, or a network of the zoo. Each error carries a code: `archdsl explain CODE` tells more."""
    from archdsl.check import check_file, check_source, minimum_report, spec_files
    from archdsl.reports import Checked, as_github, as_json, as_sarif
    from archdsl.source import Source

    if min_input:
        _minimum_inputs(specs, quiet, allow_import_dir, network, parse_params(param), minimum_report)
        return
    checked = []
    try:
        params, limits = parse_params(param), limits_of(max_params)
        for spec in spec_files(specs):
            if str(spec) == "-":
                source = Source("<stdin>", sys.stdin.read())
                report = check_source(source, allow_import_dir, [network] if network else None, params, limits)
            else:
                path, name = zoo.locate(spec, network)
                report = check_file(path, allow_import_dir, name, params, limits)
            checked.append(Checked(str(spec), report))
    except ArchError as err:  # the command line, not a spec: nothing is checked
        print(err.render(with_code=True), file=sys.stderr)  # check, for editors and CI: every error has its code
        sys.exit(1)
    for c in checked:
        report = c.report
        if fmt == "text":
            for err in report.errors:
                print(err.render(with_code=True), file=sys.stderr)
            if not report.errors and not quiet:
                print(f"{c.name}: ok: {report.summary()}")
    if fmt == "json":
        print(as_json(checked))
    elif fmt == "github":
        print(as_github(checked), end="")
    elif fmt == "sarif":
        print(as_sarif(checked, _version()))
    if any(c.report.errors for c in checked):
        sys.exit(1)


def _minimum_inputs(specs, quiet, allow_import_dir, network, params, minimum_report) -> None:
    """check --min-input: each spec's smallest inputs, or its first error."""
    failed = 0
    for spec in specs:
        try:
            path, name = zoo.locate(spec, network)
            message = minimum_report(path, allow_import_dir, name, params)
        except ArchError as err:
            failed += 1
            print(_diagnostic(err), file=sys.stderr)
            continue
        if not quiet:
            print(message)
    if failed:
        sys.exit(1)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("archdsl")
    except PackageNotFoundError:
        return "0+unknown"


@app.command("explain", short_help="Explain an error code, with a wrong and a fixed example.")
@click.argument("code", metavar="CODE")
def explain_command(code: str) -> None:
    """Print what the error CODE (A101, say, as `archdsl check` prints it) means, a spec that makes the mistake
    and the same spec fixed (all of them: docs/errors.md)."""
    from archdsl.codes import explain

    print(explain(code), end="")


@app.command("lsp", short_help="Run the language server (for editors), on standard input and output.")
def lsp_command() -> None:
    """Run archdsl's Language Server Protocol server over standard input and output: diagnostics, shapes as
    inlay hints, hover, go to definition, references, completion, signature help, symbols, formatting and
    rename for .arch files. It needs the 'lsp' extra: pip install 'archdsl[lsp]'. See docs/editors.md."""
    from archdsl.extras import required

    with required():
        from archdsl.lsp.server import serve

    serve()


@app.command("fmt", short_help="Format specs in the canonical style.")
@click.argument("specs", nargs=-1, required=True, type=PATH, metavar="SPEC...")
@click.option("--check", is_flag=True, help="Change nothing; list the files that would change, exit 1 if any.")
@click.option("--write", "-w", is_flag=True, help="Rewrite the files in place (atomically).")
def fmt_command(specs: tuple[Path, ...], check: bool, write: bool) -> None:
    """Print each SPEC in the canonical style, comments kept (or --check them, or --write them back)."""
    from archdsl.atomic import write_text_atomic
    from archdsl.formatter import format_source
    from archdsl.program import read_source

    if check and write:
        raise UsageError("--check and --write exclude each other")
    failed = False
    for spec in specs:
        try:
            path, _ = zoo.locate(spec)
            if write and path is not spec:
                raise UsageError(f"fmt --write rewrites spec files, and {spec} is a network of the zoo",
                                 hint=f"copy its family's spec with `archdsl fmt {spec} > FILE.arch` and edit that")
            source = read_source(path)
            formatted = format_source(source)
            if formatted == source.text:
                if not (check or write):
                    print(formatted, end="")
            elif check:
                print(f"would reformat {spec}")
                failed = True
            elif write:
                write_text_atomic(spec, formatted)  # a link stays a link: the file it points to is rewritten
                print(f"reformatted {spec}")
            else:
                print(formatted, end="")
        except ArchError as err:
            print(_diagnostic(err), file=sys.stderr)
            failed = True
    if failed:
        sys.exit(1)


@app.command("export", short_help="Write a network as PyTorch source, ONNX or TorchScript.")
@spec_argument
@click.option("--out", "-o", type=PATH, required=True, metavar="FILE", help="The file to write ('-': standard output).")
@click.option("--to", type=click.Choice(list(FORMATS)),
              help="The format. Default: from the suffix of FILE (.py, .onnx, .pt).")
@param_option
@input_option
@network_option
@click.option("--checkpoint", type=PATH, metavar="RUN_DIR",
              help="Export the weights of this `archdsl train` run (its newest finished epoch); with --to python "
                   "they go to FILE's name with .safetensors.")
@click.option("--normalize/--no-normalize", default=None,
              help="Build the run's input normalisation into the model, which then takes images in [0, 1] as "
                   "torchvision's ToTensor makes them. Default: on with --checkpoint.")
@import_dir_option
def export_command(spec: Path, out: Path, to: str | None, param: tuple[str, ...], input: str | None,
                   network: str | None, checkpoint: Path | None, normalize: bool | None,
                   allow_import_dir: tuple[Path, ...]) -> None:
    """Write the network of SPEC as standalone PyTorch source, ONNX or TorchScript.

    With --checkpoint, --param, --network and --input default to the run's own, and the model takes images in
    [0, 1]: the run's normalisation is its first step (unless --no-normalize)."""
    from archdsl.export import export, format_for

    to = format_for(to, out)
    if checkpoint is not None:
        from archdsl.runner.runfolder import read

        net = load_network_as_run(spec, param, network, input, read(checkpoint).spec, allow_import_dir)
    else:
        net = load_network(spec, param, network, input, import_dirs=allow_import_dir)
    _report(out, export(net, to, out, checkpoint, normalize).describe())


def _report(output: Path, message: str) -> None:
    """What a command wrote, on stdout, or on stderr when the output itself went to stdout."""
    from archdsl.atomic import writes_to_stdout

    print(message, file=sys.stderr if writes_to_stdout(output) else sys.stdout)


@app.command("compare", short_help="Compare two networks, or a spec with a Python model.")
@spec_argument
@click.argument("other", required=False, type=PATH, metavar="[OTHER]")
@param_option
@click.option("--param-a", multiple=True, metavar="NAME=VALUE", help="A parameter of A only (repeatable).")
@click.option("--param-b", multiple=True, metavar="NAME=VALUE", help="A parameter of B only (repeatable).")
@input_option
@click.option("--input-a", metavar="CxHxW", help="A's input shape.")
@click.option("--input-b", metavar="CxHxW", help="B's input shape.")
@network_option
@click.option("--reference", metavar="MODULE:FACTORY",
              help="Check SPEC against a Python model: a class or factory returning an nn.Module "
                   "(references:vgg11, torchvision.models:resnet18).")
@click.option("--reference-path", multiple=True, type=PATH, metavar="DIR",
              help="A folder to import the reference from (repeatable; the current folder is searched last).")
@click.option("--reference-arg", multiple=True, metavar="NAME=VALUE",
              help="A keyword argument of the reference's factory (repeatable).")
@click.option("--load-weights", is_flag=True,
              help="Copy the reference's weights into the spec's module (by position, shapes checked) and compare "
                   "the outputs.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object.")
@import_dir_option
def compare_command(spec: Path, other: Path | None, param: tuple[str, ...], param_a: tuple[str, ...],
                    param_b: tuple[str, ...], input: str | None, input_a: str | None, input_b: str | None,
                    network: str | None, reference: str | None, reference_path: tuple[Path, ...],
                    reference_arg: tuple[str, ...], load_weights: bool, json_: bool,
                    allow_import_dir: tuple[Path, ...]) -> None:
    """Compare two networks' parameters and MACs per layer family (SPEC as A, OTHER as B; without OTHER, SPEC
    again with --param-b / --input-b), or SPEC with a Python model (--reference)."""
    from archdsl import compare

    if reference is not None:
        if other is not None or param_a or param_b or input_a or input_b:
            raise UsageError("--reference compares one spec with a Python model; it takes no OTHER, --param-a/-b "
                             "or --input-a/-b", hint="use --param and --input to set the spec")
        net = load_network(spec, param, network, input, import_dirs=allow_import_dir)
        data = compare.against_reference(net, reference, list(reference_path),
                                         parse_params(reference_arg, "--reference-arg"), load_weights)
        print(json.dumps(data, indent=1) if json_ else compare.render_reference(data), end="\n" if json_ else "")
        return
    if load_weights or reference_path or reference_arg:
        raise UsageError("--load-weights, --reference-path and --reference-arg go with --reference")
    if other is None and not (param_b or input_b or param_a or input_a):
        raise UsageError("compare needs a second spec, or --param-b / --input-b to compare SPEC with itself",
                         hint="for example: archdsl compare specs/vgg11.arch --param-b ratio=4")
    a = load_network(spec, [*param, *param_a], network, input_a or input, import_dirs=allow_import_dir)
    b = load_network(other or spec, [*param, *param_b], network, input_b or input,
                     import_dirs=allow_import_dir)
    data = compare.side_by_side(a, b)
    print(json.dumps(data, indent=1) if json_ else compare.render_side_by_side(data), end="\n" if json_ else "")


@app.command("zoo", short_help="List the zoo's networks (torchvision's classifiers) with params and MACs.")
@click.option("--json", "json_", is_flag=True, help="Print one JSON object.")
def zoo_command(json_: bool) -> None:
    """List the networks of the zoo, torchvision's classifiers, with their family spec, input, parameters and
    MACs. Every command that takes a spec takes one of these names: archdsl compile resnet50."""
    entries = zoo.entries()
    if json_:
        print(json.dumps(zoo.as_json(entries), indent=1))
    else:
        print(zoo.table(entries), end="")


@app.command("layers", short_help="List the layer kinds with their arguments.")
def layers_command() -> None:
    """List the layer kinds, their arguments and defaults."""
    from archdsl.layers import describe_kinds

    print(describe_kinds())


def _register_runner() -> None:
    """``train`` and ``eval`` live with the runner (archdsl/runner/commands.py), ``sweep`` beside them
    (archdsl/runner/sweep/command.py); they import torch only when run."""
    from archdsl.runner import commands
    from archdsl.runner.sweep import command as sweep

    commands.register(app)
    sweep.register(app)


_register_runner()


def main() -> None:
    try:
        code = app.main(prog_name="archdsl", standalone_mode=False)
        sys.stdout.flush()  # here, where a failure to write the output can still be reported
    except click.exceptions.NoArgsIsHelpError as err:
        click.echo(err.ctx.get_help() if err.ctx else app.get_help(click.Context(app)))
        code = 0
    except click.ClickException as err:
        # click's own mistakes (a missing argument, an unknown option, a bad number) read like ours.
        print(_usage_error(err).render(), file=sys.stderr)
        code = 1
    except click.exceptions.Abort:
        code = 130
    except OSError as err:
        code = _output_failed(err)
    sys.exit(code or 0)


def _output_failed(err: OSError) -> int:
    """Standard output could not be written (``> /dev/full``, a closed pipe), or the file system refused
    something the commands did not foresee: one line naming the file and the reason, status 1.

    Files are written through archdsl.atomic and read through program.read_source, which report their own
    failures; this is the boundary's last net, so that no OSError ever reaches the user as a traceback.
    """
    if err.filename is not None:
        print(UsageError(f"cannot use {err.filename}: {err.strerror or err}").render(), file=sys.stderr)
        return 1
    # Nothing more can reach the output; Python's flush at exit must not fail again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if err.errno != errno.EPIPE:  # a reader that went away (| head) is no error to report
        print(UsageError(f"cannot write the output: {err.strerror or err}").render(), file=sys.stderr)
    return 1


def _usage_error(err: click.ClickException) -> UsageError:
    """click's message in our words: "No such option '--jsn'. Did you mean '--json'?" becomes the error
    "no such option '--jsn'" with the hint "did you mean '--json'? see archdsl compile --help"."""
    found = re.fullmatch(r"(.*?)\.?(?: \(?Did you mean (.*?)\)?)?", err.format_message(), flags=re.DOTALL)
    message, suggestion = found.group(1), found.group(2)
    if message[:2].istitle():  # "Missing argument ..." -> "missing argument ..."
        message = message[0].lower() + message[1:]
    ctx = getattr(err, "ctx", None)  # usage errors know their command
    path = ctx.command_path if ctx is not None else "archdsl"
    hint = f"did you mean {suggestion} " if suggestion else ""
    return UsageError(message, hint=f"{hint}see {path} --help")


if __name__ == "__main__":
    main()
