"""Limits that hold before anything is expanded or allocated.

Specs that would explode (a billion repeats, a block that calls itself, thousands of nested groups,
expressions thousands deep, a 100 MB file, an exponential tower of blocks) end in one clear
ArchError, quickly, in little memory, without a RecursionError and without touching the
interpreter's recursion limit. "Quickly" is checked by construction where it can be: the resolver
is counted, and must have looked at a handful of layers, not at the millions the spec describes.
Imports stay inside the folders allowed, and import cycles print their whole chain.
"""

from __future__ import annotations

import sys
import time
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner

import archdsl
from archdsl import parser, resolve
from archdsl.cli import app
from archdsl.errors import ArchError, LimitError, ResolveError
from archdsl.formatter import format_source
from archdsl.parser import MAX_SOURCE_SIZE
from archdsl.resolve import Limits
from archdsl.source import Source

REPO = Path(__file__).resolve().parents[1]
DEPTH = Limits().max_depth
# Time is the process's CPU time, which a busy CI machine does not inflate, with a generous bound
# (docs/reliability.md has the wall-clock times on a quiet machine); the layer counts are exact.
SECONDS = 5.0


@pytest.fixture
def layers_seen(monkeypatch) -> list[int]:
    """How many layers the resolver has inferred so far, in both its passes.

    A network is built in one walk until it outgrows ``resolve.SIZE_FIRST_ABOVE`` layers; then it is
    sized first. So a spec over the limits costs at most that many layers, plus what sizing counts.
    """
    seen = [0]
    original = resolve._Resolver.layer

    def counting(self, *args, **kwargs):
        seen[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(resolve._Resolver, "layer", counting)
    return seen


def refuse(text: str, error=LimitError, path: str = "bomb.arch", **kwargs):
    """Compile ``text`` expecting ``error``; return it, having checked time and the recursion limit."""
    limit = sys.getrecursionlimit()
    start = time.process_time()
    with pytest.raises(error) as info:
        archdsl.loads(text, path=path, **kwargs)
    assert time.process_time() - start < SECONDS
    assert sys.getrecursionlimit() == limit
    return info.value


# -- expansion ------------------------------------------------------------------------------------


def test_a_billion_repeats_are_refused_before_one_is_expanded(layers_seen):
    err = refuse("network n : [3, 32, 32] = repeat 1000000000 <conv3x3 1000000>")
    assert err.render() == (
        "bomb.arch:1:34: error: repeat 1000000000 would expand to more than 200,000 layers\n"
        "    1 | network n : [3, 32, 32] = repeat 1000000000 <conv3x3 1000000>\n"
        "      |                                  ^^^^^^^^^^\n"
        "  hint: archdsl refuses specs this large before expanding them"
    )
    assert layers_seen[0] == 0


def test_nested_repeats_are_counted_before_they_are_expanded(layers_seen):
    err = refuse("network n : [3, 32, 32] = repeat 100000 repeat 100000 relu")
    assert (err.message, err.line, err.column) == ("repeat 100000 would expand to more than 200,000 layers", 1, 34)
    assert layers_seen[0] <= resolve.SIZE_FIRST_ABOVE + 1


def test_nested_repeats_multiply_instead_of_looping(layers_seen):
    # A count read from the input is not known before the shapes are: the sizing walk multiplies.
    err = refuse("network n : [3, 32, 32] = repeat in.c repeat 100000 relu")
    assert (err.message, err.line, err.column) == ("the network has more than 200,000 layers", 1, 34)
    assert layers_seen[0] <= resolve.SIZE_FIRST_ABOVE + 1 + 2


def test_an_exponential_tower_of_blocks_is_counted_not_expanded(layers_seen):
    # b59 holds 2**60 layers: each block calls the one below twice.
    err = refuse(BOMBS["2^60 layers from 60 blocks"])
    assert err.message == "the network has more than 200,000 layers"
    assert layers_seen[0] <= resolve.SIZE_FIRST_ABOVE + 1 + 2 * 60


def test_the_layer_limit_is_exact():
    limits = Limits(max_layers=1000)
    net = archdsl.loads("network n : [3, 8, 8] = repeat 999 relu; id", limits=limits)
    assert sum(1 for _ in net.layers()) == 1000
    err = refuse("network n : [3, 8, 8] = repeat 999 relu; id; id", limits=limits)
    assert (err.message, err.line, err.column) == ("the network has more than 1,000 layers", 1, 46)


def test_parameters_over_the_limit_are_refused_with_the_count_and_the_limit(layers_seen):
    err = refuse("network big : [3, 32, 32] = repeat 3 <conv3x3 1000000>", limits=Limits(max_params=10**9))
    # 3*9*10**6 + 10**6 for the first, 9*10**12 + 10**6 for each of the two others.
    assert err.render() == (
        "bomb.arch:1:9: error: network big needs 18,000,030,000,000 parameters (67,055 GiB of fp32 weights), "
        "more than the limit of 1,000,000,000\n"
        "    1 | network big : [3, 32, 32] = repeat 3 <conv3x3 1000000>\n"
        "      |         ^^^\n"
        "  hint: if this is intended, raise the limit: archdsl compile or check --max-params N, "
        "or archdsl.Limits(max_params=N) in Python (building it needs that much memory)"
    )
    # Building stops at the second layer, the one over the limit; sizing then counts two layers and
    # multiplies for the third.
    assert layers_seen[0] <= 2 + 2


def test_the_default_parameter_limit_follows_the_machine():
    import os

    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert Limits().max_params == memory // 4


def test_max_params_on_the_command_line(tmp_path):
    spec = tmp_path / "small.arch"
    spec.write_text("network n : [3, 32, 32] = conv3x3 64; conv3x3 64\n")
    result = CliRunner().invoke(app, ["compile", str(spec), "--max-params", "1000"])
    assert result.exit_code == 1
    # (3*9 + 1)*64 + (64*9 + 1)*64 = 1,792 + 36,928
    assert result.stderr.startswith(
        f"{spec}:1:9: error: network n needs 38,720 parameters (0.1 MiB of fp32 weights), more than the limit of 1,000 [A604]\n")
    assert CliRunner().invoke(app, ["compile", str(spec), "--max-params", "38720"]).exit_code == 0


# -- recursion and nesting -------------------------------------------------------------------------


def test_a_block_that_calls_itself():
    err = refuse("block b(c) = conv3x3 c; b(c)\nnetwork n : [3, 32, 32] = b(4)", ResolveError)
    assert err.render() == (
        "bomb.arch:1:25: error: block 'b' calls itself: b -> b\n"
        "    1 | block b(c) = conv3x3 c; b(c)\n"
        "      |                         ^\n"
        "  hint: blocks cannot recurse; use repeat N ... for repetition\n"
        "bomb.arch:2:27: note: b(4) instantiated here\n"
        "    2 | network n : [3, 32, 32] = b(4)\n"
        "      |                           ^^^^"
    )


def test_blocks_that_call_each_other_show_the_cycle():
    err = refuse("block a(c) = conv3x3 c; b(c)\nblock b(c) = a(c)\nnetwork n : [3, 32, 32] = a(4)", ResolveError)
    assert (err.message, err.line, err.column) == ("block 'a' calls itself: a -> b -> a", 2, 14)
    assert [str(where) for _, where in err.notes] == ["bomb.arch:1:25", "bomb.arch:3:27"]


NESTED = 5_000  # deep enough for every depth limit, within the token limit (5 tokens a level at most)


@pytest.mark.parametrize("opening, closing", [("<", ">"), ("concat [ id | ", " ]"), ("repeat 1 ", ""),
                                             ("if 1 then ", " else id"), ("add [ ", " ]")])
def test_five_thousand_nested_constructs(opening, closing):
    text = "network n : [3, 8, 8] = " + opening * NESTED + "relu" + closing * NESTED
    err = refuse(text)
    assert err.message == f"nesting deeper than {DEPTH} levels (groups, repeats, branches and block calls)"


def test_a_chain_of_five_thousand_blocks():
    blocks = [f"block b{i} = b{i + 1}()" for i in range(NESTED)] + [f"block b{NESTED} = relu"]
    err = refuse("\n".join(blocks) + "\nnetwork n : [3, 8, 8] = b0()")
    assert err.message.startswith(f"nesting deeper than {DEPTH} levels")


@pytest.mark.parametrize("argument", [
    "1" + " + 1" * NESTED,  # left-deep
    "(1 - " * NESTED + "1" + ")" * NESTED,  # right-deep
    "3 k=" + "-" * NESTED + "3",  # signs
    "min(" * NESTED + "1" + ", 2)" * NESTED,  # calls
])
def test_expressions_five_thousand_deep(argument):
    err = refuse(f"network n : [3, 8, 8] = conv {argument}")
    assert err.message == f"expression nested more than {DEPTH} deep"


def test_a_test_five_thousand_deep():
    err = refuse("network n : [3, 8, 8] = if " + "not " * NESTED + "1 then relu else id")
    assert err.message == f"expression nested more than {DEPTH} deep"


def test_nesting_just_inside_the_limit_compiles_and_prints():
    # The deepest nesting allowed still serialises (pydantic has its own depth limit) and prints.
    depth = DEPTH - 1
    net = archdsl.loads("network n : [3, 8, 8] = " + "concat [ " * depth + "conv3x3 4" + " ]" * depth)
    assert net.output_shape == (4, 8, 8)
    assert net.ir.model_dump_json() and net.summary() and net.text()


def test_the_formatter_does_not_recurse_either():
    text = "network n : [3, 8, 8] = " + "<" * NESTED + "relu" + ">" * NESTED + "\n"
    assert format_source(Source("deep.arch", text)) == text


TOWER = "\n".join(["block b0 = relu; relu"] + [f"block b{i} = b{i - 1}(); b{i - 1}()" for i in range(1, 60)])
GROWING = "\n".join(["block b0 = conv1x1 (in.c + 1)"] + [f"block b{i} = b{i - 1}(); b{i - 1}()" for i in range(1, 41)])
EMPTY = "\n".join(["block b0 = repeat 0 relu"] + [f"block b{i} = b{i - 1}(); b{i - 1}()" for i in range(1, 41)])
BALANCED = "1"
for _ in range(10):
    BALANCED = f"({BALANCED} + {BALANCED})"
BOMBS = {  # what docs/reliability.md measures: python tests/test_limits.py
    "repeat 1000000000 <conv3x3 1000000>": "network n : [3, 32, 32] = repeat 1000000000 <conv3x3 1000000>",
    "repeat 100000 repeat 100000 relu": "network n : [3, 32, 32] = repeat 100000 repeat 100000 relu",
    "a block calling itself": "block b(c) = conv3x3 c; b(c)\nnetwork n : [3, 32, 32] = b(4)",
    "blocks calling each other": "block a(c) = conv3x3 c; b(c)\nblock b(c) = a(c)\nnetwork n : [3, 32, 32] = a(4)",
    "2^60 layers from 60 blocks": TOWER + "\nnetwork n : [3, 8, 8] = b59()",
    "5,000 nested groups": "network n : [3, 8, 8] = " + "<" * NESTED + "relu" + ">" * NESTED,
    "an expression 5,000 deep": "network n : [3, 8, 8] = conv3x3 1" + " + 1" * NESTED,
    "2^40 layers that grow the channels": GROWING + "\nnetwork n : [3, 8, 8] = b40()",
    "2^40 blocks without layers": EMPTY + "\nnetwork n : [3, 8, 8] = b40()",
    "a flat expression of a mebibyte": "network n : [3, 8, 8] = conv3x3 " + "+".join(["1"] * 2**19),
    "repeat 100000 of 2,047 terms": f"block b = conv1x1 (in.c + 0 * {BALANCED})\nnetwork n : [3, 8, 8] = repeat 100000 b",
}


def peak_memory(compile_it) -> int:
    """The peak of Python allocations while ``compile_it()`` fails with an ArchError."""
    tracemalloc.start()
    try:
        with pytest.raises(ArchError):
            compile_it()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", list(BOMBS))
def test_exploding_specs_use_little_memory(name):
    assert peak_memory(lambda: archdsl.loads(BOMBS[name])) < 64 * 2**20


# -- files ----------------------------------------------------------------------------------------


def test_a_100_mb_file_is_refused_without_reading_it(tmp_path):
    huge = tmp_path / "huge.arch"
    with open(huge, "wb") as file:
        file.truncate(100 * 2**20)  # sparse: no disk, and nothing to read unless someone reads it
    tracemalloc.start()
    start = time.process_time()
    try:
        with pytest.raises(LimitError) as info:
            archdsl.load(huge)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < SECONDS
    assert peak < 2**20
    assert info.value.render() == (
        f"{huge}: error: {huge} is 104,857,600 bytes, more than the limit of 10,485,760 bytes (10 MiB)\n"
        "  hint: a spec that large is almost surely not one; split it into files that import each other"
    )


def test_an_import_too_large_is_refused_at_the_import(tmp_path):
    (tmp_path / "huge.arch").write_bytes(b" " * (MAX_SOURCE_SIZE + 1))
    (tmp_path / "main.arch").write_text('import "huge.arch"\nnetwork n : [1, 8, 8] = relu\n')
    with pytest.raises(LimitError) as info:
        archdsl.load(tmp_path / "main.arch")
    assert (info.value.line, info.value.column) == (1, 1)
    assert info.value.message.startswith('cannot import "huge.arch": ')


def test_text_too_large_is_refused_before_parsing():
    with pytest.raises(LimitError) as info:
        archdsl.loads("#" * (MAX_SOURCE_SIZE + 1))
    assert info.value.message == f"the spec is {MAX_SOURCE_SIZE + 1:,} characters long, more than the limit of {MAX_SOURCE_SIZE:,}"


def test_bytes_that_are_not_utf8_are_placed(tmp_path):
    spec = tmp_path / "latin1.arch"
    spec.write_bytes("# café\nnetwork n : [1, 8, 8] =\n    relu; dropout 0.5 # r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ResolveError) as info:
        archdsl.load(spec)
    assert info.value.render() == (
        f"{spec}:1:6: error: the file is not UTF-8 text: it cannot be decoded here (invalid continuation byte 0xe9)\n"
        "    1 | # caf\N{REPLACEMENT CHARACTER}\n"
        "      |      ^\n"
        "  hint: save the file as UTF-8 (a spec is plain text)"
    )


def test_bytes_that_are_not_utf8_in_an_import(tmp_path):
    (tmp_path / "lib.arch").write_bytes(b"block b = relu\nblock c = \xff\n")
    (tmp_path / "main.arch").write_text('import "lib.arch"\nnetwork n : [1, 8, 8] = b()\n')
    with pytest.raises(ResolveError) as info:
        archdsl.load(tmp_path / "main.arch")
    assert (Path(info.value.file).name, info.value.line, info.value.column) == ("lib.arch", 2, 11)
    assert [(note, where.line) for note, where in info.value.notes] == [("imported here", 1)]


def test_a_byte_order_mark_is_fine(tmp_path):
    spec = tmp_path / "bom.arch"
    spec.write_bytes(b"\xef\xbb\xbfnetwork n : [1, 8, 8] = relu\n")
    assert archdsl.load(spec).output_shape == (1, 8, 8)


# -- imports --------------------------------------------------------------------------------------


def test_an_import_cycle_prints_the_whole_chain_with_canonical_paths(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.arch").write_text('import "sub/b.arch"\nnetwork n : [1, 8, 8] = relu\n')
    (tmp_path / "sub" / "b.arch").write_text('import "../sub/./c.arch"\n')
    (tmp_path / "sub" / "c.arch").write_text('import "../a.arch"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["check", "a.arch"])
    assert result.exit_code == 1
    assert result.stderr == (
        "sub/c.arch:1:1: error: import cycle: a.arch -> sub/b.arch -> sub/c.arch -> a.arch [A502]\n"
        '    1 | import "../a.arch"\n'
        "      | ^^^^^^^^^^^^^^^^^^\n"
        "  hint: move the shared blocks into a file that both import\n"
        "sub/b.arch:1:1: note: imported here\n"
        '    1 | import "../sub/./c.arch"\n'
        "      | ^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "a.arch:1:1: note: imported here\n"
        '    1 | import "sub/b.arch"\n'
        "      | ^^^^^^^^^^^^^^^^^^^\n"
    )


@pytest.fixture
def outside(tmp_path, monkeypatch) -> Path:
    """project/main.arch imports ../outside.arch, which defines block b."""
    (tmp_path / "project").mkdir()
    (tmp_path / "outside.arch").write_text("block b = relu\n")
    (tmp_path / "project" / "main.arch").write_text('import "../outside.arch"\nnetwork n : [1, 8, 8] = b()\n')
    monkeypatch.chdir(tmp_path)
    return Path("project/main.arch")


def test_an_import_outside_the_specs_folder_is_refused(outside):
    result = CliRunner().invoke(app, ["compile", str(outside)])
    assert result.exit_code == 1
    assert result.stderr == (
        'project/main.arch:1:1: error: cannot import "../outside.arch": outside.arch is outside the folders '
        "imports may reach (project) [A503]\n"
        '    1 | import "../outside.arch"\n'
        "      | ^^^^^^^^^^^^^^^^^^^^^^^^\n"
        "  hint: if you trust it, allow its folder: --allow-import-dir .\n"
    )


def test_allow_import_dir_lets_it_in(outside):
    assert CliRunner().invoke(app, ["compile", str(outside), "--allow-import-dir", "."]).exit_code == 0
    assert CliRunner().invoke(app, ["check", str(outside), "--allow-import-dir", "."]).exit_code == 0
    assert archdsl.load(outside, import_dirs=["."]).output_shape == (1, 8, 8)


def test_a_symlink_does_not_smuggle_an_import_out(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    (tmp_path / "secret.arch").write_text("block b = relu\n")
    (tmp_path / "project" / "link.arch").symlink_to(tmp_path / "secret.arch")
    (tmp_path / "project" / "main.arch").write_text('import "link.arch"\nnetwork n : [1, 8, 8] = b()\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResolveError) as info:
        archdsl.load("project/main.arch")
    assert info.value.message == ('cannot import "link.arch": secret.arch is outside the folders imports may reach '
                                  "(project)")


def test_the_specs_import_their_lib_folder_by_default():
    for spec in sorted((REPO / "specs").glob("*.arch")):
        archdsl.load(spec)


def _measure() -> None:
    """Print the table of docs/reliability.md: outcome, wall and CPU time, peak memory of each bomb."""
    import tempfile

    huge = Path(tempfile.mkdtemp()) / "huge.arch"
    with open(huge, "wb") as file:
        file.truncate(100 * 2**20)
    cases = {name: (lambda text=text: archdsl.loads(text)) for name, text in BOMBS.items()}
    cases["a 100 MB file"] = lambda: archdsl.load(huge)
    print("| case | outcome | wall s | CPU s | peak MiB |\n|---|---|---|---|---|")
    for name, compile_it in cases.items():
        peak = peak_memory(compile_it)
        parser.clear_cache()  # time the parse too
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            compile_it()
        except ArchError as err:
            outcome = type(err).__name__
        print(f"| {name} | {outcome} | {time.perf_counter() - wall:.3f} | {time.process_time() - cpu:.3f} | "
              f"{peak / 2**20:.1f} |")


if __name__ == "__main__":
    _measure()
