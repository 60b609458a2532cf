"""Differential shape checking: archdsl's static answers against what torch really does.

Random programs (tests/strategies.py) use the whole language. For each one that compiles, the static
shape, parameter count and MAC count of every node equal what the built module does on the meta
device (MACs counted from the torch modules by forward hooks, not by archdsl's formulas), the totals
equal those of the oracle (the same program written by hand in torch), and small ones also run on
real CPU tensors: the built module with its weights copied into the oracle gives the oracle's
outputs, and so does its ``torch.fx.symbolic_trace``. Programs drawn without regard to shapes must be
accepted by archdsl exactly when torch accepts them, and refused with an ArchError at a line and
column, never another exception.

Example counts are bounded for CI; ``ARCHDSL_HYPOTHESIS_EXAMPLES=2000 pytest tests/test_differential.py``
runs a longer campaign.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from strategies import (
    TORCH_REJECTS,
    Oracle,
    Program,
    copy_weights,
    count_params,
    join_branches,
    measure,
    programs,
    randomise_normalisation,
    total_macs,
)

import archdsl
from archdsl import ir

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
    assert net.output_shape == tuple(y.shape[1:])
    assert net.params == count_params(oracle)
    assert net.macs == total_macs(oracle, x)

    with torch.device("meta"):
        built = net.build().eval()
    seen = measure(built, x)
    nodes = list(ir.walk(net.ir.body))
    assert {node.path for node in nodes} == set(seen) - join_branches(nodes)
    for node in nodes:
        got = seen[node.path]
        assert (node.in_shape, node.out_shape, node.params, node.macs) == (
            got.in_shape, got.out_shape, got.params, got.macs,
        ), f"{node.path}\n{listing(files)}"  # fmt: skip
    traced = torch.fx.symbolic_trace(built)
    assert tuple(traced(x).shape[1:]) == net.output_shape

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


# -- regressions found by the properties above ------------------------------------------------------


@pytest.mark.parametrize(
    ("test", "taken"),
    [("c > 3", "conv1x1"), ("c < 3", "id"), ("in.c > 1 and in.c < 9", "conv1x1"), ("not c <= 3", "conv1x1")],
)
def test_if_compares_with_lt_and_gt(test: str, taken: str) -> None:
    # '<' and '>' used to lex as the group brackets inside a test, so `if c > 3` never parsed.
    net = archdsl.loads(f"block b(c) = if {test} then conv1x1 c else id\nnetwork n : [2, 4, 4] = b(5)")
    assert [layer.spelling for layer in net.layers()] == [taken]
