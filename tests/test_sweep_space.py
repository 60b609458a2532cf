"""The design space of a sweep: the choices syntax, the grid and the seeded samples (archdsl/runner/sweep/space.py)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from archdsl.errors import UsageError
from archdsl.resolve import parse_value
from archdsl.runner.sweep.space import Space, parse_choices, parse_numbers, parse_parameter, value_text


def values(text: str) -> list:
    choices = parse_choices(text, "-p x")
    return [choices.pick(index) for index in range(choices.size)]


@pytest.mark.parametrize(("text", "expected"), [
    ("16", [16]),
    ("16,32,64", [16, 32, 64]),
    ("16|32", [16, 32]),
    ("1..4", [1, 2, 3, 4]),
    ("-1..1", [-1, 0, 1]),
    ("1..2,8", [1, 2, 8]),
    ("0.05,0.1", [0.05, 0.1]),
    ("true,false", [True, False]),
    ("[1,1],[2,2]", [(1, 1), (2, 2)]),
    ("(1, 7),(7, 1)", [(1, 7), (7, 1)]),
    ("[1..2,1|3]", [(1, 1), (1, 3), (2, 1), (2, 3)]),
    ("[16|32,64]", [(16, 64), (32, 64)]),
    ("[[1,2]|[3],4]", [((1, 2), 4), ((3,), 4)]),
    ("[]", [()]),
    (" [ 1 .. 2 , 5 ] ", [(1, 5), (2, 5)]),
])
def test_choices_give_these_values_in_this_order(text, expected):
    assert values(text) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("", "-p x: no value given"),
    ("16,,32", "-p x: a value expected before ','"),
    ("16,", "-p x: it ends where a value belongs"),
    ("1..", "-p x: it ends where the end of the range belongs"),
    ("[1,2", "-p x: '[' is not closed"),
    ("[1 2]", "-p x: ',' or ']' expected before '2'"),
    ("1]", "-p x: ']' where a value or ',' belongs"),
    ("1.5..3", "-p x: the range 1.5..3 needs whole numbers at both ends"),
    ("4..1", "-p x: the range 4..1 is empty: it goes from 4 down to 1"),
    ("wide", "-p x: 'wide' is not a number"),
    ("16,32,16", "-p x: 16 is given twice"),
    ("1..4,3", "-p x: 3 is given twice (by 1..4 and 3)"),
    ("1..4,3..6", "-p x: 3 is given twice (by 1..4 and 3..6)"),
    ("[1..2,3],[2,3]", "-p x: [2,3] is given twice (by [1..2,3] and [2,3])"),
    ("[1|1]", "-p x: 1 is given twice"),
])
def test_a_mistake_in_the_choices_is_one_message(text, message):
    with pytest.raises(UsageError) as caught:
        parse_choices(text, "-p x")
    assert caught.value.message == message
    assert caught.value.hint


def test_values_of_other_types_or_lengths_are_distinct():
    assert values("1,true,[1],[1,1]") == [1, True, (1,), (1, 1)]
    assert values("1..3,0.5") == [1, 2, 3, 0.5]


def test_a_parameter_names_itself_and_its_option():
    parameter = parse_parameter("depths=[1,1],[2,2]")
    assert (parameter.name, parameter.size, parameter.given) == ("depths", 2, "depths=[1,1],[2,2]")
    with pytest.raises(UsageError) as caught:
        parse_parameter("16,32")
    assert caught.value.message == "--param takes NAME=CHOICES, not '16,32'"
    with pytest.raises(UsageError) as caught:
        parse_parameter("width=16,,32")
    assert caught.value.message == "--param width=16,,32: a value expected before ','"


def test_learning_rates_are_numbers():
    choices = parse_numbers("0.05,0.1", "--lr")
    assert [choices.pick(i) for i in range(choices.size)] == [0.05, 0.1]
    with pytest.raises(UsageError) as caught:
        parse_numbers("0.1,[1]", "--lr")
    assert caught.value.message == "--lr 0.1,[1]: [1] is not a number"


def space(*items: str) -> Space:
    return Space(tuple(parse_parameter(item) for item in items))


def test_the_grid_is_the_product_the_last_parameter_fastest():
    grid = space("width=16,32,64", "depth=1..4", "depths=[1,1],[2,2]")
    assert grid.size == 24
    assert [grid.configuration(i) for i in grid.indices(None, 0)] == [
        {"width": w, "depth": d, "depths": ds}
        for w, d, ds in itertools.product([16, 32, 64], [1, 2, 3, 4], [(1, 1), (2, 2)])]
    assert grid.describe(None) == "24 configurations (a grid of width x depth x depths)"
    assert space("width=16").describe(None) == "1 configuration"


def test_samples_are_distinct_seeded_and_drawn_from_the_whole_space():
    anynet = space("depths=[1..16,1..16,1..16,1..16]", "channels=[8..1024,8..1024,8..1024,8..1024]",
                   "bot_mul=1,2,4")
    assert anynet.size == 16**4 * 1017**4 * 3  # about 2 * 10**17: drawn from without being listed
    drawn = anynet.indices(50, seed=3)
    assert len(set(drawn)) == 50 and all(0 <= index < anynet.size for index in drawn)
    assert anynet.indices(50, seed=3) == drawn
    assert anynet.indices(50, seed=4) != drawn
    assert all(len(anynet.configuration(index)["depths"]) == 4 for index in drawn)
    small = space("width=16,32,64", "depth=1..4")
    assert sorted(small.indices(12, seed=0)) == list(range(12))  # every configuration, in a seeded order
    assert small.describe(5) == "5 configurations sampled from 12 (width x depth)"


@pytest.mark.parametrize(("items", "samples", "message"), [
    (("width=1..400", "depth=1..400"), None, "the grid has 160,000 configurations, more than 100,000"),
    (("width=16,32",), 3, "--samples 3 asks for more configurations than the design space has (2)"),
    (("width=16,32",), 0, "--samples must be at least 1, got 0"),
    (("a=[0..1000000,0..1000000,0..1000000,0..1000000,0..1000000]",), 1,
     "the design space has 1e+30 configurations, more than 2**62"),
])
def test_a_space_too_large_or_samples_too_many_is_refused(items, samples, message):
    with pytest.raises(UsageError) as caught:
        space(*items).indices(samples, 0)
    assert caught.value.message == message


scalars = st.one_of(st.booleans(), st.integers(-2**40, 2**40),
                    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
parameter_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4).map(tuple), max_leaves=12)


@given(parameter_values)
def test_a_configuration_s_value_reads_back_as_the_same_param(value):
    text = value_text(value)
    assert parse_value(text) == value
    assert values(text) == [value]
