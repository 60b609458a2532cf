"""Fuzzing the front end: whatever the input, a compiled network or one ArchError with its place.

Two sources of input:

* ``grammar_programs()``: programs drawn from archdsl's own Lark grammar (with the strategy that
  Hypothesis's ``from_lark`` returns, bounded in depth), terminals padded by spaces so that keywords
  and names do not fuse, names and numbers mostly the ones a spec uses (so that many programs get past
  name resolution into shapes) and sometimes extremes (``1e999``, a 400-digit integer);
* ``spec_mutants()``: the specs in specs/ with tokens deleted, duplicated, swapped or replaced,
  truncated, with random bytes and bytes that are not UTF-8, in the spec or in a file it imports.

``outcome`` is the oracle: anything but a compiled network or an ArchError fails, and an ArchError
must carry a line and a column inside the text, or name its file where it has no place (a missing
network, say). CI runs a bounded, derandomized number of cases; ``scripts/fuzz_campaign.py`` runs
the same generators for 100,000+ cases (see docs/reliability.md).
"""

from __future__ import annotations

import functools
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import LarkStrategy
from lark import Lark
from lark.grammar import Terminal

import archdsl
from archdsl.errors import ArchError
from archdsl.parser import GRAMMAR

REPO = Path(__file__).resolve().parents[1]
SPECS = REPO / "specs"
SPEC_FILES = sorted(p.relative_to(SPECS).as_posix() for p in SPECS.rglob("*.arch"))
MAINS = [p for p in SPEC_FILES if re.search(r"^network ", (SPECS / p).read_text(), re.M)]
# For a file of blocks, a network spec that imports it (each file of blocks has one).
IMPORTERS = {lib: next(m for m in MAINS if f'"{lib}"' in (SPECS / m).read_text()) for lib in SPEC_FILES if lib not in MAINS}

CI = settings(
    max_examples=600,
    deadline=None,
    derandomize=True,  # CI replays the same cases; the campaign script explores
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# -- the oracle ------------------------------------------------------------------------------------


def outcome(compile_it) -> str:
    """Run ``compile_it()``; return "ok" or the error's class name, and fail on anything else.

    A compiled network must also print (summary, IR text, JSON); an error must render.
    """
    try:
        net = compile_it()
    except ArchError as err:
        rendered = err.render()
        assert "Traceback" not in rendered
        if err.span is None:
            assert err.file, f"an error with neither a place nor a file: {rendered}"
        else:
            lines = err.span.source.text.count("\n") + 1
            assert 1 <= err.line <= lines and err.column >= 1, f"a place outside the text: {rendered}"
        return type(err).__name__
    net.summary()
    net.text()
    net.ir.model_dump_json()
    return "ok"


# -- programs from the grammar -----------------------------------------------------------------------

LAYER_NAMES = ["relu", "conv", "conv3x3", "conv1x1", "conv2x2", "maxpool", "maxpool2", "avgpool", "avgpool3", "gap",
               "adaptiveavgpool", "flatten", "linear", "fc", "dropout", "bn", "lrn", "id", "sigmoid", "tanh", "gelu",
               "leakyrelu", "softmax"]
PARAM_NAMES = ["c", "n", "k", "s", "p", "d", "groups", "bias", "out", "slope", "classes", "H", "W", "true", "false",
               "depths", "widths", "i"]
BLOCK_NAMES = ["b", "vgg", "stage", "residual", "classifier", "dense", "transition", "inception", "stem", "min", "max",
               "range", "len", "round", "make_divisible"]
KEYWORDS = {"import", "default", "block", "network", "repeat", "for", "if", "then", "else", "in", "not", "and", "or",
            "concat", "add", "mul"}


def _random_name():
    return st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True).filter(lambda s: s not in KEYWORDS)


def _explicit() -> dict[str, st.SearchStrategy[str]]:
    """A strategy per terminal: padded with spaces so that tokens never fuse, and realistic values."""
    number = st.one_of(
        st.integers(0, 300).map(str),
        st.sampled_from(["0.5", "1.5", ".25", "1e3", "2.0", "0", "0.0", "4294967296", "99999999999999999999"]),
        st.sampled_from(["1e308", "1e999", "1e-400", "9" * 400]),  # beyond what a float holds
    )
    known = st.sampled_from(LAYER_NAMES + PARAM_NAMES + BLOCK_NAMES)
    name = st.one_of(known, known, known, _random_name())  # mostly names a spec would use
    callname = st.one_of(st.sampled_from(BLOCK_NAMES), st.sampled_from(BLOCK_NAMES), _random_name())
    path = st.sampled_from(["lib/vgg.arch", "lib/heads.arch", "lib/resnet.arch", "missing.arch", "../outside.arch",
                            "fuzz.arch", "", "lib", "lib/../lib/vgg.arch"])
    comment = st.text(st.characters(blacklist_characters="\n\r", codec="utf-8"), max_size=8).map(lambda s: f"#{s}\n")
    explicit = {}
    for terminal in _grammar().terminals:
        # Keywords and punctuation are literal strings or small alternations: list them rather than
        # asking from_regex, which is far slower per draw.
        pattern = terminal.pattern
        choices = [pattern.value] if pattern.type == "str" else re.findall(r"[^|()?:\\]+|\\.", pattern.value)
        choices = [c.replace("\\", "") for c in choices]
        explicit[terminal.name] = st.sampled_from([f" {c} " for c in choices])
    explicit.update(
        NAME=name.map(lambda s: f" {s} "),
        CALLNAME=callname.map(lambda s: f" {s}"),  # glued to the '(' that follows
        LPAR=st.just("( "),
        NUMBER=number.map(lambda s: f" {s} "),
        STRING=path.map(lambda s: f' "{s}" '),
        # A comment or a line break now and then, where a ';' ends an item.
        SEMICOLON=st.one_of(st.just(" ; "), st.just(";\n"), comment.map(lambda c: f" ; {c}")),
    )
    return explicit


@functools.lru_cache(maxsize=1)
def _grammar() -> Lark:
    # The parser's own Lark object comes from a cache without the grammar that from_lark reads. The
    # %ignore lines go: from_lark would otherwise draw whitespace or a comment after every symbol
    # (the padding above spaces the tokens, and ';' brings comments).
    text = "\n".join(line for line in GRAMMAR.read_text().splitlines() if not line.startswith("%ignore"))
    return Lark(text, parser="lalr", strict=True)


class _BoundedLark(LarkStrategy):
    """``from_lark``, except that below ``max_depth`` nested rules each rule takes its shortest
    expansion (the grammar's base cases: a bare layer, a number). The grammar branches more than it
    ends (a body holds items, an item holds bodies), so unbounded draws mostly grow until Hypothesis
    discards them, and a hundred programs took a minute; bounded, they take a second."""

    def __init__(self, grammar: Lark, explicit: dict[str, st.SearchStrategy[str]], max_depth: int) -> None:
        super().__init__(grammar, "start", explicit, st.characters(codec="utf-8"))
        self.limit = max_depth
        self.max_depth = max_depth
        self.depth = 0
        self.base_cases = {name: st.just(s.elements[0]) for name, s in self.nonterminal_strategies.items()}

    def do_draw(self, data) -> str:
        self.max_depth = data.draw(st.integers(3, self.limit))  # small programs as well as large ones
        return super().do_draw(data)

    def draw_symbol(self, data, symbol, draw_state) -> None:
        if isinstance(symbol, Terminal):
            draw_state.append(data.draw(self.terminal_strategies[symbol.name]))
            return
        rules = self.nonterminal_strategies if self.depth < self.max_depth else self.base_cases
        data.start_span(self.rule_label(symbol.name))
        self.depth += 1
        try:
            for part in data.draw(rules[symbol.name]):
                self.draw_symbol(data, part, draw_state)
        finally:
            self.depth -= 1
            data.stop_span()


def grammar_programs(max_depth: int = 14) -> st.SearchStrategy[str]:
    """Programs the grammar accepts, except where a drawn name happens to be a keyword."""
    return _BoundedLark(_grammar(), _explicit(), max_depth)


def compile_text(text: str):
    """Compile text as if it were specs/fuzz.arch, so that its imports of lib/ resolve."""
    return archdsl.loads(text, path=str(SPECS / "fuzz.arch"))


@CI
@given(grammar_programs())
def test_grammar_programs_compile_or_fail_with_a_place(text):
    outcome(lambda: compile_text(text))


# -- mutations of the specs ----------------------------------------------------------------------

_TOKEN = re.compile(rb'\s+|#[^\n]*|"[^"\n]*"|[A-Za-z_][A-Za-z0-9_]*|\d+(?:\.\d*)?|//|->|[<>=!]=|.', re.S)
_VOCABULARY = [b";", b"<", b">", b"[", b"]", b"|", b"(", b")", b",", b"=", b"repeat", b"concat", b"add", b"id",
               b"block", b"network", b"import", b"0", b"-1", b"1000000000", b"in.c", b"conv3x3", b"k=", b" ", b"\n",
               b"0.0", b"1e308", b"1e-400", b"9" * 400]


@st.composite
def spec_mutants(draw) -> tuple[str, bytes]:
    """(a spec file under specs/, mutated bytes for it)."""
    name = draw(st.sampled_from(SPEC_FILES))
    data = (SPECS / name).read_bytes()
    tokens = _TOKEN.findall(data)
    for _ in range(draw(st.integers(1, 3))):
        if not tokens:
            break
        at = draw(st.integers(0, len(tokens) - 1))
        how = draw(st.sampled_from(["delete", "duplicate", "swap", "replace", "truncate", "bytes", "not_utf8"]))
        if how == "delete":
            del tokens[at]
        elif how == "duplicate":
            tokens.insert(at, tokens[at])
        elif how == "swap" and at + 1 < len(tokens):
            tokens[at], tokens[at + 1] = tokens[at + 1], tokens[at]
        elif how == "replace":
            tokens[at] = draw(st.sampled_from(_VOCABULARY))
        elif how == "truncate":
            cut = b"".join(tokens)[: draw(st.integers(0, len(data)))]
            tokens = [cut]
        elif how == "bytes":
            tokens.insert(at, draw(st.binary(min_size=1, max_size=4)))
        else:
            tokens.insert(at, draw(st.sampled_from([b"\xff", b"\xc3(", b"\xe2\x82", b"\xed\xa0\x80", b"\x80"])))
    return name, b"".join(tokens)


@pytest.fixture(scope="module")
def spec_copy(tmp_path_factory) -> Path:
    """A private copy of specs/, so that mutants can replace files in it."""
    folder = tmp_path_factory.mktemp("specs")
    shutil.copytree(SPECS, folder, dirs_exist_ok=True)
    return folder


def compile_mutant(folder: Path, name: str, data: bytes) -> str:
    """Write the mutant over its file in ``folder`` and compile the spec that uses it; restore after."""
    target = folder / name
    original = (SPECS / name).read_bytes()
    main = name if name in MAINS else IMPORTERS[name]
    target.write_bytes(data)
    try:
        return outcome(lambda: archdsl.load(folder / main))
    finally:
        target.write_bytes(original)


@CI
@given(spec_mutants())
def test_spec_mutants_compile_or_fail_with_a_place(spec_copy, mutant):
    name, data = mutant
    compile_mutant(spec_copy, name, data)


def test_the_mutants_reach_every_outcome(spec_copy):
    """The mutation fuzzer is not vacuous: over a fixed sample it meets valid, syntax, name and shape outcomes."""
    seen = set()

    @settings(CI, max_examples=600)
    @given(spec_mutants())
    def collect(mutant):
        seen.add(compile_mutant(spec_copy, *mutant))

    collect()
    assert {"ok", "ParseError", "ResolveError", "ShapeError"} <= seen


def test_grammar_programs_get_past_the_parser():
    """Most generated programs parse, so the fuzzing reaches resolution and shapes."""
    outcomes = []

    @settings(CI, max_examples=200)
    @given(grammar_programs())
    def collect(text):
        outcomes.append(outcome(lambda: compile_text(text)))

    collect()
    assert outcomes.count("ParseError") < len(outcomes) / 4
    assert {"ResolveError", "ShapeError"} <= set(outcomes)  # past the names, into the shapes
