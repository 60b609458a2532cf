"""Differential shape checking: archdsl's static answers against what torch really does.

Random programs (tests/strategies.py) use the whole language. For each one that compiles, the static
shape, parameter count and MAC count of every node equal what the built module does on the meta
device (MACs counted from the torch modules by forward hooks, not by archdsl's formulas), the totals
equal those of the oracle (the same program written by hand in torch), and small ones also run on
real CPU tensors: the built module with its weights copied into the oracle gives the oracle's
outputs, and so does its ``torch.fx.symbolic_trace``. Programs drawn without regard to shapes must be
accepted by archdsl exactly when torch accepts them, and refused with an ArchError at a line and
column, never another exception.

Symbolic sizes are drawn too. Expressions alone (every operator on whole numbers, decimals, booleans
and ``in.c``/``in.h``/``in.w``) give the reference's value at a concrete input, or an ArchError exactly
where the reference refuses; at a symbolic input ``C×H×W`` they give a value that is the concrete one at
every H and W drawn, or an ArchError that says the size is symbolic. Valid programs resolved at a
symbolic input give, node by node, the concrete shapes and counts once H and W are known.

Example counts are bounded for CI; ``ARCHDSL_HYPOTHESIS_EXAMPLES=2000 pytest tests/test_differential.py``
runs a longer campaign.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from strategies import (
    TORCH_REJECTS,
    Oracle,
    Program,
    Reject,
    cond_tests,
    cond_text,
    cond_value,
    copy_weights,
    count_params,
    evaluate,
    expr_text,
    expressions,
    join_branches,
    measure,
    programs,
    randomise_normalisation,
    shape_of,
    total_macs,
)

import archdsl
from archdsl import ir, resolve, values
from archdsl.program import load_program
from archdsl.source import Source
from archdsl.symbolic import Sym

EXAMPLES = int(os.environ.get("ARCHDSL_HYPOTHESIS_EXAMPLES", "0"))
REAL_MACS = 3_000_000  # networks up to this many MACs also run on real CPU tensors


def bounded(examples: int):
    return settings(
        max_examples=EXAMPLES or examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def write_files(files: dict[str, str], folder: str) -> None:
    for relative, text in files.items():
        path = Path(folder, relative)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def compile_program(program: Program) -> tuple[archdsl.CompiledNetwork | None, archdsl.ArchError | None, dict]:
    """Write the program's files to a fresh folder and load its main file."""
    files = program.files()
    with tempfile.TemporaryDirectory() as folder:
        write_files(files, folder)
        try:
            return archdsl.load(Path(folder, "main.arch")), None, files
        except archdsl.ArchError as err:
            return None, err, files


def torch_verdict(program: Program) -> Exception | None:
    """None when torch runs the oracle, else what it raised."""
    try:
        Oracle(program)(torch.empty(2, *program.input_shape(), device="meta"))
    except TORCH_REJECTS as err:
        return err
    return None


def listing(files: dict) -> str:
    return "\n".join(f"--- {name}\n{text}" for name, text in files.items())


def assert_located(err: archdsl.ArchError, files: dict) -> None:
    """The error names a generated file and a place that exists in it."""
    assert err.line is not None and err.column is not None, err.render()
    name = Path(err.file).as_posix()
    matches = [rel for rel in files if name.endswith(rel)]
    assert matches, f"error in {err.file}, which is none of {list(files)}"
    lines = files[max(matches, key=len)].splitlines()
    assert 1 <= err.line <= len(lines), err.render()
    assert 1 <= err.column <= len(lines[err.line - 1]) + 1, err.render()
    assert "error:" in err.render()


def check_against_torch(net: archdsl.CompiledNetwork, program: Program, files: dict, real: bool = True) -> None:
    shape = program.input_shape()
    x = torch.empty(2, *shape, device="meta")
    oracle = Oracle(program)
    y = oracle(x)
    assert net.input_shape == shape
    assert net.output_shape == shape_of(y)  # tokens as tokens: the oracle's tensors say what they hold
    assert net.params == count_params(oracle)
    assert net.macs == total_macs(oracle, x)

    with torch.device("meta"):
        built = net.build().eval()
    seen = measure(built, x)
    nodes = list(ir.walk(net.ir.body))
    assert {node.path for node in nodes} == set(seen) - join_branches(nodes)
    for node in nodes:
        got = seen[node.path]
        assert (tuple(node.in_shape), tuple(node.out_shape), node.params, node.macs) == (
            got.in_shape, got.out_shape, got.params, got.macs,
        ), f"{node.path}\n{listing(files)}"  # fmt: skip
    traced = torch.fx.symbolic_trace(built)
    assert tuple(traced(x).shape[1:]) == tuple(net.output_shape)

    if real and net.macs <= REAL_MACS:
        event("ran on real CPU tensors")
        check_real_outputs(net, program)


def check_real_outputs(net: archdsl.CompiledNetwork, program: Program) -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, *net.input_shape, generator=generator)
    built = net.build(seed=0)
    randomise_normalisation(built, generator)
    built.eval()
    oracle = Oracle(program)
    with torch.no_grad():
        oracle(x)  # makes its modules
    copy_weights(built, oracle)
    oracle.eval()
    with torch.no_grad():
        expected = oracle(x)
        actual = built(x)
        traced = torch.fx.symbolic_trace(built)(x)
    assert torch.allclose(actual, expected, rtol=1e-4, atol=1e-5), (actual - expected).abs().max()
    assert torch.equal(traced, actual)


@bounded(150)
@given(programs(valid=True))
def test_valid_programs_compile_and_agree_with_torch(program: Program) -> None:
    assert torch_verdict(program) is None  # valid by construction
    net, err, files = compile_program(program)
    assert err is None, f"{err.render()}\n{listing(files)}"
    check_against_torch(net, program, files)


@bounded(200)
@given(programs(valid=False))
def test_archdsl_rejects_exactly_what_torch_rejects(program: Program) -> None:
    net, err, files = compile_program(program)
    refused = torch_verdict(program)
    if err is not None:
        event("rejected")
        assert_located(err, files)
        assert refused is not None, f"archdsl refuses what torch runs:\n{err.render()}\n{listing(files)}"
    else:
        event("accepted")
        assert refused is None, f"archdsl accepts what torch refuses ({refused}):\n{listing(files)}"
        check_against_torch(net, program, files)


@bounded(40)
@given(programs(valid=True, big=True))
def test_wide_networks_on_the_meta_device(program: Program) -> None:
    net, err, files = compile_program(program)
    assert err is None, f"{err.render()}\n{listing(files)}"
    check_against_torch(net, program, files, real=False)


@bounded(150)
@given(programs(valid=False))
def test_one_walk_and_size_first_agree(program: Program) -> None:
    """A network is built in one walk below resolve.SIZE_FIRST_ABOVE layers and sized first above it: the
    two paths give the same graph, or the same error."""
    from archdsl import resolve

    def outcome() -> str:
        try:
            return archdsl.load(Path(folder, "main.arch")).text()
        except archdsl.ArchError as err:
            return err.render()

    files = program.files()
    with tempfile.TemporaryDirectory() as folder:
        write_files(files, folder)
        one_walk = outcome()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(resolve, "SIZE_FIRST_ABOVE", 0)
            size_first = outcome()
    assert size_first == one_walk, listing(files)


# -- symbolic sizes -----------------------------------------------------------------------------------

H, W = Sym.symbol("H"), Sym.symbol("W")
SYMBOLIC = re.compile("symbolic|input size")  # what an error that symbolic sizes cause must say


def value_in_archdsl(text: str, shape: tuple, test: bool = False):
    """The value of the expression (or, with ``test``, the truth of the if test) ``text`` at an input of
    ``shape``, or the ArchError that archdsl raises for it."""
    program = load_program(Source("<expr>", f"network n : [1, 1, 1] = if {text} then id else id"))
    expr = program.networks["n"].body[0].test
    try:
        value = resolve._Resolver(program, resolve.Limits()).evaluate(expr, resolve._Scope({}, shape, ""))
        return values.truth(value, expr.span) if test else value
    except archdsl.ArchError as err:
        return err


def reference(compute):
    try:
        return compute()
    except Reject:
        return Reject


def assert_agrees(text: str, expected, c: int, h: int, w: int, test: bool = False) -> None:
    """archdsl agrees with the reference at C×h×w, and at C×H×W once H and W are h and w."""
    concrete = value_in_archdsl(text, (c, h, w), test)
    if expected is Reject:
        assert isinstance(concrete, archdsl.ArchError), (text, concrete)
    else:
        assert (type(concrete), concrete) == (type(expected), expected), (text, concrete, expected)
    symbolic = value_in_archdsl(text, (c, H, W), test)
    if isinstance(symbolic, archdsl.ArchError):
        event("refused at a symbolic input")
        assert expected is Reject or SYMBOLIC.search(symbolic.message), (text, symbolic.render())
        return
    event("a value at a symbolic input")
    at = symbolic.evaluate({"H": h, "W": w}) if isinstance(symbolic, Sym) else symbolic
    assert expected is not Reject and (type(at), at) == (type(expected), expected), (text, symbolic, expected)


@bounded(400)
@given(expressions(), st.integers(1, 4), st.integers(1, 40), st.integers(1, 40))
def test_expressions_agree_with_the_reference_at_concrete_and_symbolic_sizes(expr, c, h, w) -> None:
    expected = reference(lambda: evaluate(expr, {}, (c, h, w)))
    assert_agrees(expr_text(expr), expected, c, h, w)


@bounded(300)
@given(cond_tests(), st.integers(1, 4), st.integers(1, 40), st.integers(1, 40))
def test_if_tests_agree_with_the_reference_at_concrete_and_symbolic_sizes(test, c, h, w) -> None:
    expected = reference(lambda: cond_value(test, {}, (c, h, w)))
    assert_agrees(cond_text(test), expected, c, h, w, test=True)


@bounded(100)
@given(programs(valid=True))
def test_valid_programs_at_a_symbolic_input_agree_with_concrete_inference(program: Program) -> None:
    """Node by node, the symbolic shapes and counts at H = h and W = w are the concrete ones; or the
    program is refused at a symbolic input with a located ArchError (a layer argument read from in.h, a
    test that depends on it, branches that differ for some sizes)."""
    files = program.files()
    c, h, w = program.input_shape()
    with tempfile.TemporaryDirectory() as folder:
        write_files(files, folder)
        concrete = archdsl.load(Path(folder, "main.arch"))
        try:
            symbolic = archdsl.load(Path(folder, "main.arch"), input_shape=(c, H, W))
        except archdsl.ArchError as err:
            event("refused at a symbolic input")
            assert_located(err, files)
            return
    event("resolved at a symbolic input")

    def at(dim):
        return dim.evaluate({"H": h, "W": w}) if isinstance(dim, Sym) else dim

    for sym_node, node in zip(ir.walk(symbolic.ir.body), ir.walk(concrete.ir.body), strict=True):
        assert sym_node.path == node.path
        assert tuple(map(at, sym_node.out_shape)) == tuple(node.out_shape), (node.path, listing(files))
        assert isinstance(sym_node.out_shape, ir.Tokens) == isinstance(node.out_shape, ir.Tokens), node.path
        assert (at(sym_node.params), at(sym_node.macs)) == (node.params, node.macs), node.path
    assert tuple(map(at, symbolic.output_shape)) == tuple(concrete.output_shape)


# -- regressions found by the properties above ------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "taken"),
    [("c > 3", "conv1x1"), ("c < 3", "id"), ("in.c > 1 and in.c < 9", "conv1x1"), ("not c <= 3", "conv1x1")],
)
def test_if_compares_with_lt_and_gt(test: str, taken: str) -> None:
    # '<' and '>' used to lex as the group brackets inside a test, so `if c > 3` never parsed.
    net = archdsl.loads(f"block b(c) = if {test} then conv1x1 c else id\nnetwork n : [2, 4, 4] = b(5)")
    assert [layer.spelling for layer in net.layers()] == [taken]
