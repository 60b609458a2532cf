"""Hostile expressions, numbers and expansions, through the commands a user runs.

Symbolic sizes meet every operator and every kind of operand; huge integers meet ``check``, ``fmt``,
``graph`` and ``compile``; expansion bombs of every shape are refused by counting, in little time and
memory. Whatever the input, the outcome is a result or one ArchError: exit status 1, ``FILE:LINE:COL:
error:`` with the line and a caret, never a traceback.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
import tracemalloc

import pytest
from click.testing import CliRunner

import archdsl
from archdsl import ir, parser, resolve, values
from archdsl.parser import MAX_TOKENS
from archdsl.cli import app
from archdsl.errors import ArchError, LimitError, ResolveError, UsageError
from archdsl.program import load_program
from archdsl.resolve import Limits
from archdsl.source import Source
from archdsl.symbolic import Sym

H, W = Sym.symbol("H"), Sym.symbol("W")
SECONDS = 5.0  # CPU seconds, generous: each bomb here is refused in well under one on a quiet machine
MEMORY = 256 * 2**20

OPERANDS = {  # kind -> the operand as a spec writes it
    "whole": "3",
    "negative": "(-2)",
    "decimal": "1.5",
    "boolean": "true",
    "symbolic": "in.h",
    "symbolic sum": "(in.h + in.w)",
}
ARITHMETIC = ["+", "-", "*", "/", "//", "%"]
COMPARISONS = ["==", "!=", "<", "<=", ">", ">="]
PAIRS = list(itertools.product(OPERANDS, OPERANDS))


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def assert_diagnostic(result) -> str:
    """Exit status 1 and one located diagnostic with its line and caret, no traceback; returns stderr."""
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    err = result.stderr
    assert "Traceback" not in err
    assert re.match(r"\S+:\d+:\d+: error: ", err), err
    assert re.search(r"^\s+\d+ \| .*\n\s+\| *\^+$", err, re.MULTILINE), err
    return err


def assert_clean(result) -> str | None:
    """Success, or a located diagnostic; the diagnostic's text when there is one."""
    if result.exit_code == 0:
        return None
    return assert_diagnostic(result)


def value_of(expr: str, shape: tuple = (3, H, W)):
    """The value of ``expr`` at the network level of an input of ``shape`` (in.c, in.h, in.w)."""
    program = load_program(Source("<expr>", f"network n : [1, 1, 1] = if {expr} then id else id"))
    test = program.networks["n"].body[0].test
    return resolve._Resolver(program, Limits()).evaluate(test, resolve._Scope({}, shape, ""))


def refuse(text: str, error=LimitError, **kwargs) -> ArchError:
    """Compile ``text`` expecting ``error``, in bounded CPU time, then again for the peak of memory."""
    program = load_program(Source("bomb.arch", text))  # parsing is the parser's (about 0.1 MB/s)
    start = time.process_time()
    with pytest.raises(error) as info:
        resolve.resolve_network(program, **kwargs)
    assert time.process_time() - start < SECONDS
    tracemalloc.start()
    try:
        with pytest.raises(error):
            resolve.resolve_network(program, **kwargs)
        assert tracemalloc.get_traced_memory()[1] < MEMORY
    finally:
        tracemalloc.stop()
    return info.value


# -- symbolic sizes and every operator ---------------------------------------------------------------


@pytest.mark.parametrize("op", ARITHMETIC)
def test_every_arithmetic_operator_on_every_pair_of_kinds(op, tmp_path):
    """At a symbolic input each pair works or is one clear error; a boolean is never a number; with a
    concrete input every pair of numbers works."""
    for left, right in PAIRS:
        spec = tmp_path / "ops.arch"
        spec.write_text(f"block b(v = {OPERANDS[left]} {op} {OPERANDS[right]}) = relu\n"
                        "network n : [3, H, W] = conv3x3 4; b()\n")
        case = f"{left} {op} {right}"
        for args in (["compile", spec], ["check", "--min-input", spec]):
            err = assert_clean(cli(*args))
            if err is None:
                continue
            message = err.splitlines()[0]
            if "boolean" in (left, right):
                assert "not the boolean true" in message, (case, err)
            else:
                assert "symbolic" in (left + right), (case, err)
                assert "symbolic" in message and "--input" in err, (case, err)
        err = assert_clean(cli("compile", spec, "--input", "3x8x8"))
        assert (err is None) == ("boolean" not in (left, right)), (case, err)


@pytest.mark.parametrize("op", COMPARISONS)
def test_every_comparison_on_every_pair_of_kinds(op, tmp_path):
    for left, right in PAIRS:
        spec = tmp_path / "cmp.arch"
        spec.write_text(f"network n : [3, H, W] = if {OPERANDS[left]} {op} {OPERANDS[right]} then relu else id\n")
        case = f"{left} {op} {right}"
        err = assert_clean(cli("compile", spec))
        booleans = [kind == "boolean" for kind in (left, right)]
        if any(booleans) and not (all(booleans) and op in ("==", "!=")):
            assert err is not None and "the boolean true" in err.splitlines()[0], (case, err)
        elif err is not None:
            assert "symbolic" in (left + right), (case, err)
            assert re.search("depends on the input size|symbolic size", err.splitlines()[0]), (case, err)
        concrete = assert_clean(cli("compile", spec, "--input", "3x8x8"))
        assert (concrete is None) == (not any(booleans) or all(booleans) and op in ("==", "!=")), (case, concrete)


@pytest.mark.parametrize("function", ["min", "max"])
def test_min_and_max_on_every_pair_of_kinds(function, tmp_path):
    for left, right in PAIRS:
        spec = tmp_path / "fn.arch"
        spec.write_text(f"block b(v = {function}({OPERANDS[left]}, {OPERANDS[right]})) = relu\n"
                        "network n : [3, H, W] = b()\n")
        err = assert_clean(cli("compile", spec))
        if "boolean" in (left, right):
            assert err is not None and f"{function}(...) takes numbers, not the boolean true" in err
        elif err is not None:
            assert "symbolic" in (left + right) and "symbolic" in err, err


@pytest.mark.parametrize("operand", list(OPERANDS))
def test_signs_and_not_on_every_kind(operand, tmp_path):
    spec = tmp_path / "un.arch"
    spec.write_text(f"block b(v = -{OPERANDS[operand]}) = if not {OPERANDS[operand]} then relu else id\n"
                    "network n : [3, H, W] = b()\n")
    err = assert_clean(cli("compile", spec))
    assert (err is None) == (operand != "boolean"), err
    if err is not None:
        assert "'-' takes numbers, not the boolean true" in err


@pytest.mark.parametrize(("expr", "expected"), [
    ("in.h // 2", H // 2),
    ("in.h % 3", H - 3 * (H // 3)),
    ("3 - in.h", 3 - H),
    ("in.h * in.w", H * W),
    ("(in.h + 1) // 2 * 2", ((H + 1) // 2) * 2),
    ("min(in.h, in.h + 1)", H),
    ("max(in.h, in.h - 1)", H),
    ("max(in.h, 0)", H),
    ("in.h == in.h", True),
    ("in.h != in.h", False),
    ("in.h + 1 > in.h", True),
    ("in.h > 0", True),  # a size is at least 1
    ("in.h == 0", False),
    ("not in.h", False),
    ("in.c * 2.5", 7.5),
])
def test_symbolic_values_where_they_are_decided(expr, expected):
    assert value_of(expr) == expected


@pytest.mark.parametrize(("expr", "message"), [
    ("in.h * 1.5", "'*' of the symbolic size H and 1.5 has no exact form: symbolic sizes combine with whole numbers only"),
    ("2.5 // in.h", "cannot divide by the symbolic size H: '//' and '%' need a number on their right"),
    ("7 % in.w", "cannot divide by the symbolic size W: '//' and '%' need a number on their right"),
    ("in.h / 2", "'/' gives a decimal, and the symbolic size H has no exact one; divide with //"),
    ("in.h // (-2)", "cannot divide the symbolic size H by -2: only by a positive whole number"),
    ("in.h // 0", "division by zero"),
    ("(in.h + in.w) // 2", "the symbolic size H + W divided by 2 has no exact form"),
    ("in.h + true", "'+' takes numbers, not the boolean true"),
    ("in.h == 2.5", "'==' cannot compare the symbolic size H with the decimal 2.5"),
    ("in.h != in.w", "whether H != W depends on the input size"),
    ("in.h < 3", "whether H < 3 depends on the input size"),
    # True at every size, but floor(H / 2) - H has terms of both signs: archdsl does not decide it.
    ("in.h // 2 < in.h", "whether floor(H / 2) < H depends on the input size"),
    ("max(in.h, 3)", "max(H, 3) depends on the input size"),
    ("true < false", "'<' cannot order the boolean true and the boolean false"),
    ("true == 1", "'==' cannot compare the boolean true and the whole number 1"),
])
def test_symbolic_errors_say_what_they_met(expr, message):
    with pytest.raises(ResolveError) as info:
        value_of(expr)
    assert info.value.message.startswith(message), info.value.message


def test_equality_of_identical_symbolic_sizes_decides_an_if():
    net = archdsl.loads("network n : [3, H, W] = if in.h == in.h and in.w > 0 then conv3x3 4 else id")
    assert [layer.kind for layer in net.layers()] == ["conv"]


def test_a_default_of_a_decimal_over_a_symbolic_size_is_one_error_in_every_command(tmp_path):
    spec = tmp_path / "default.arch"
    spec.write_text("block b(c = 2.5 // in.h) = conv1x1 c\nnetwork n : [1, H, W] = b()\n")
    for args in (["compile", spec], ["check", spec], ["check", "--min-input", spec], ["graph", spec, "-o", "-",
                                                                                         "--format", "dot"]):
        err = assert_diagnostic(cli(*args))
        assert err.startswith(f"{spec}:1:13: error: cannot divide by the symbolic size H"), err


def test_a_repeat_count_read_from_a_symbolic_size_says_so(tmp_path):
    spec = tmp_path / "repeat.arch"
    spec.write_text("network n : [3, H, W] = repeat (in.h // 8) conv3x3 3\n")
    err = assert_diagnostic(cli("compile", spec))
    assert err.startswith(f"{spec}:1:33: error: repeat count must be a number known before the input size, "
                          "not floor(H / 8)"), err
    assert "--input" in err
    assert cli("compile", spec, "--input", "3x16x16").exit_code == 0


# -- huge numbers ------------------------------------------------------------------------------------

def product(levels: int) -> str:
    """``((N * N) * (N * N))`` ... of 18-digit literals: 18 * 2**levels digits, only ``levels`` deep."""
    text = "9" * 18
    for _ in range(levels):
        text = f"({text} * {text})"
    return text


HUGE_SPECS = {  # name -> (spec, place, the start of the message)
    "a product of 4,608 digits": (f"network n : [1, 8, 8] = conv3x3 {product(8)}\n", "1:41",
                                  "999999999999999998000000000000000001 is too large"),
    "a product past 2**62": ("network n : [1, 8, 8] = conv3x3 (4611686018427387904 * 4611686018427387904)\n", "1:34",
                             "21267647932558653966460912964485513216 is too large"),
    "a literal of 25 digits": ("network n(c = 1000000000000000000000000) : [1, 8, 8] = conv3x3 c\n", "1:15",
                               "1000000000000000000000000 is too large"),
    "a decimal past 2**62": ("network n : [1, 8, 8] = dropout (1e300 * 0)\n", "1:34", "1e+300 is too large"),
    "channels that double 70 times": ("network n : [1, 8, 8] = repeat 70 concat [ id | id ]\n", "1:35",
                                      "concat gives 9223372036854775808×8×8, past what archdsl computes with"),
    "a symbolic size halved 70 times": ("network n : [1, H, W] = repeat 70 maxpool2\n", "1:35",
                                        "maxpool2 gives 1×(floor(H / 9223372036854775808))"),
    "a flatten past 2**62": ("network n : [4611686018427387904, 4611686018427387904, 2] = flatten\n", "1:61",
                             "flatten gives 42535295865117307932921825928971026432, past what"),
}


@pytest.mark.parametrize("name", list(HUGE_SPECS))
@pytest.mark.parametrize("command", [["check"], ["compile"], ["compile", "--json"], ["graph", "-o", "-", "--format", "dot"]])
def test_huge_numbers_are_one_error_in_every_command(name, command, tmp_path):
    text, place, message = HUGE_SPECS[name]
    spec = tmp_path / "huge.arch"
    spec.write_text(text)
    err = assert_diagnostic(cli(command[0], spec, *command[1:]))
    assert err.startswith(f"{spec}:{place}: error: {message}"), err


@pytest.mark.parametrize("name", list(HUGE_SPECS))
def test_fmt_prints_huge_numbers_as_written(name, tmp_path):
    spec = tmp_path / "huge.arch"
    spec.write_text(HUGE_SPECS[name][0])
    result = cli("fmt", spec)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == HUGE_SPECS[name][0]


@pytest.mark.parametrize("command", [["check"], ["fmt"], ["compile"], ["graph", "-o", "-", "--format", "dot"]])
def test_a_literal_of_5000_digits_is_one_error_in_every_command(command, tmp_path):
    spec = tmp_path / "literal.arch"
    spec.write_text("network n : [1, 8, 8] = conv3x3 " + "9" * 5000 + "\n")
    err = assert_diagnostic(cli(command[0], spec, *command[1:]))
    assert err.startswith(f"{spec}:1:33: error: 999999999999... (5,000 digits) is too large"), err


def test_huge_values_on_the_command_line_and_in_the_api(tmp_path):
    spec = tmp_path / "p.arch"
    spec.write_text("network n(classes = 3) : [1, 8, 8] = flatten; linear classes\n")
    for args in (["-p", "classes=" + "9" * 5000], ["-p", "classes=1e999"], ["--input", "1x" + "9" * 5000 + "x8"],
                 ["--input", "1x4611686018427387905x8"]):
        result = cli("compile", spec, *args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
        assert result.stderr.startswith("archdsl: error: ") and "is too large" in result.stderr, result.stderr
        assert len(result.stderr) < 400  # the number is not echoed
    with pytest.raises(UsageError, match="network n, parameter 'classes': a number of about 5,000 digits is too large"):
        archdsl.load(spec, classes=10**5000)
    with pytest.raises(LimitError, match="is too large"):
        archdsl.load(spec, input_shape=(1, 2**70, 8))


def test_the_largest_values_still_compile_and_print():
    big = values.MAGNITUDE
    net = archdsl.loads(f"network n : [1, 1, 1] = conv1x1 {big}; conv1x1 {big}; gap; flatten; linear {big}",
                        limits=Limits(max_params=10**60))
    assert net.output_shape == (big,)
    assert net.summary() and net.text() and net.ir.model_dump_json()


# -- the command line --------------------------------------------------------------------------------


def test_a_parameter_given_twice_is_an_error(tmp_path):
    spec = tmp_path / "p.arch"
    spec.write_text("network n(classes = 3) : [1, 8, 8] = flatten; linear classes\n")
    for command, code in (("check", " [A707]"), ("compile", "")):  # check prints the error codes
        result = cli(command, spec, "-p", "classes=10", "-p", "classes=11")
        assert result.exit_code == 1
        assert result.stderr == (f"archdsl: error: --param sets 'classes' twice: classes=10, then classes=11{code}\n"
                                 "  hint: give each parameter once\n")


def test_min_input_of_a_spec_without_a_network_is_an_error(tmp_path):
    spec = tmp_path / "lib.arch"
    spec.write_text("block b = relu\n")
    result = cli("check", "--min-input", spec)
    assert result.exit_code == 1
    assert result.stderr == f"{spec}: error: the spec defines no network\n  hint: add one: network NAME : [C, H, W] = ...\n"
    assert cli("check", spec).exit_code == 0  # a library of blocks is fine to check


def test_the_installed_command_refuses_hostile_input_without_a_traceback(tmp_path):
    spec = tmp_path / "hostile.arch"
    spec.write_text("block b(v = 2.5 // in.h) = relu\nnetwork n : [1, H, W] = b(); repeat 70 concat [ id | id ]\n")
    for command in (["check", "--min-input"], ["compile"]):
        done = subprocess.run([sys.executable, "-m", "archdsl.cli", *command, str(spec)], capture_output=True,
                              text=True, timeout=120, check=False)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.startswith(f"{spec}:1:13: error: cannot divide by the symbolic size H")


# -- expansion bombs ---------------------------------------------------------------------------------


def tower(base: str, call: str, levels: int = 40, params: str = "") -> str:
    """Blocks b0 .. bN, each calling the one below twice (``call`` with {below} in it): 2**N times b0."""
    blocks = [f"block b0{params} = {base}"]
    blocks += [f"block b{i}{params} = " + call.format(below=f"b{i - 1}") for i in range(1, levels + 1)]
    return "\n".join(blocks)


def balanced(levels: int) -> str:
    """``((1 + 1) + (1 + 1))`` ..., 2**(levels + 1) - 1 terms and only ``levels`` deep."""
    text = "1"
    for _ in range(levels):
        text = f"({text} + {text})"
    return text


BOMBS = {  # name -> (spec, the start of the message); each took seconds to minutes, or gigabytes, before
    "layers without parameters that grow a size": (tower("adaptiveavgpool (in.h + 1)", "{below}; {below}")
                                                   + "\nnetwork n : [1, 8, 8] = b40",
                                                   "the network has more than 200,000 layers"),
    "a size that grows at each level": (tower("conv1x1 (in.c + 1)", "{below}; {below}")
                                        + "\nnetwork n : [1, 8, 8] = b40", "the network has more than 200,000 layers"),
    "channels that double at each level": (tower("concat [id | id]", "{below}; {below}")
                                           + "\nnetwork n : [1, 8, 8] = b40", "concat gives"),
    "blocks without layers": (tower("repeat 0 relu", "{below}; {below}") + "\nnetwork n : [1, 8, 8] = b40",
                              "expanding the network takes more than 1,000,000 steps"),
    "arguments that differ at every call": (tower("repeat 0 relu", "{below}(c * 2); {below}(c * 2 + 1)",
                                                  params="(c)") + "\nnetwork n : [1, 8, 8] = b40(1)",
                                            "expanding the network takes more than 1,000,000 steps"),
    "repeat counts from parameters": (tower("repeat n conv1x1 (in.c + 1)", "{below}(n); {below}(n)", params="(n)")
                                      + "\nnetwork n : [1, 8, 8] = b40(1)",
                                      "expanding the network takes more than 1,000,000 steps"),
    "an expression of 2,047 terms in a repeat": (f"block b = conv1x1 (in.c + 0 * {balanced(10)})"
                                                 + "\nnetwork n : [1, 8, 8] = repeat 100000 b",
                                                 "repeat 100000 would take more than 1,000,000 steps"),
}


@pytest.fixture
def sizing_walks(monkeypatch) -> list[bool]:
    """Whether each resolver made is a sizing walk (the shape-aware count that may visit every instance)."""
    made: list[bool] = []
    original = resolve._Resolver.__init__

    def spy(self, *args, sizing=False, **kwargs):
        made.append(sizing)
        original(self, *args, sizing=sizing, **kwargs)

    monkeypatch.setattr(resolve._Resolver, "__init__", spy)
    return made


@pytest.mark.parametrize("name", list(BOMBS))
def test_bombs_are_refused_by_counting(name, sizing_walks):
    text, message = BOMBS[name]
    err = refuse(text)
    assert err.message.startswith(message), err.render()[:2000]
    assert err.line is not None
    assert not any(sizing_walks)  # refused by the count from the program or the first walk's bounds


def test_a_tower_hidden_behind_a_test_of_the_input_is_refused_by_the_step_limit():
    """The count from the program cannot decide ``in.c > 0``; sizing walks each instance, all different,
    and stops at the step limit: the work is bounded by it (here a tenth of the default)."""
    text = tower("conv1x1 (in.c + 1)", "if in.c > 0 then <{below}; {below}> else relu", levels=20)
    err = refuse(text + "\nnetwork n : [1, 8, 8] = b20", limits=Limits(max_steps=100_000))
    assert err.message.startswith("expanding the network takes more than 100,000 steps")


def test_repeats_of_nothing_are_not_bombs():
    start = time.process_time()
    net = archdsl.loads("network n : [1, 8, 8] = repeat 100000 repeat 100000 repeat 0 relu; relu")
    assert [layer.kind for layer in net.layers()] == ["relu"]
    assert time.process_time() - start < SECONDS


def test_a_flat_expression_of_16384_terms_is_evaluated_once_quickly():
    text = "network n : [1, 8, 8] = conv3x3 max(" + ", ".join(["1"] * 16384) + "); flatten"
    program = load_program(Source("flat.arch", text))  # parsing is the parser's (about 0.1 MB/s)
    start = time.process_time()
    net = resolve.resolve_network(program)
    assert ir.format_network(net) and net.model_dump_json()
    assert time.process_time() - start < SECONDS
    err = refuse("block b = conv3x3 max(" + ", ".join(["1"] * 16384) + ")\nnetwork n : [1, 8, 8] = repeat 1000 b")
    assert err.message == "repeat 1000 would take more than 1,000,000 steps (layers, block calls, joins and terms of expressions)"


@pytest.mark.parametrize("separator", ["+", ", "])
def test_a_flat_expression_of_a_mebibyte_is_refused_before_parsing(separator):
    text = "network n : [1, 8, 8] = conv3x3 max(" + separator.join(["1"] * 2**19) + ")"
    start = time.process_time()
    with pytest.raises(LimitError) as info:
        load_program(Source("flat.arch", text))
    assert time.process_time() - start < SECONDS
    # 14 tokens up to "max(", then numbers and separators alternate: the 50,001st token is the 24,994th number
    offset = text.index("max(") + 4 + 24_993 * (1 + len(separator))
    assert (info.value.span.line, info.value.span.column) == (1, offset + 1)
    assert info.value.message == f"the spec holds more than {MAX_TOKENS:,} tokens (names, numbers and symbols)"


def test_the_token_limit_counts_no_comment_and_admits_a_spec_at_the_limit():
    layers = "; ".join(["relu"] * ((MAX_TOKENS - 11) // 2 + 1))  # 11 tokens before, then relu and ';' pairs
    text = "# a comment\n" * 100_000 + f"network n : [1, 8, 8] = {layers}\n"
    assert sum(1 for t in parser._TOKEN.finditer(text) if not t.group().startswith("#")) == MAX_TOKENS
    assert len(load_program(Source("long.arch", text)).networks) == 1
    with pytest.raises(LimitError, match="more than 50,000 tokens"):
        load_program(Source("long.arch", text + "network m : [1, 8, 8] = relu\n"))

