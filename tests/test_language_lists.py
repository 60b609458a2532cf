"""Lists, indexing, loops, the conditional expression, '**', the functions of real configs, the ``mul`` join and
file defaults (issue 12's language): what each evaluates to, the layers it makes, and its mistakes."""

from __future__ import annotations

import math
import time

import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import archdsl
from archdsl.cli import app
from archdsl.errors import ArchError, LimitError, ResolveError, ShapeError
from archdsl.formatter import format_source
from archdsl.source import Source
from archdsl.values import MAX_LIST


def value_of(expr: str, **params):
    """The value of ``expr`` as a network parameter's default (lists are tuples)."""
    net = archdsl.loads(f"network n(x = {expr}) : [1, 4, 4] = id", **params)
    return net.param_values["x"]


def error_of(text: str, **params) -> ArchError:
    with pytest.raises(ArchError) as info:
        archdsl.loads(text, **params)
    return info.value


# -- expressions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("expr, expected", [
    ("[3, 4, 6, 3]", (3, 4, 6, 3)),
    ("(1, 7)", (1, 7)),
    ("(5,)", (5,)),
    ("(5)", 5),
    ("[]", ()),
    ("[[1, 16], [6, 24]]", ((1, 16), (6, 24))),
    ("[3, 4, 6, 3][2]", None),  # a list in brackets cannot be indexed directly; see below
    ("len([3, 4, 6, 3])", 4),
    ("sum([3, 4, 6, 3])", 16),
    ("max([3, 4, 6, 3])", 6),
    ("min(3)", 3),
    ("2 ** 10", 1024),
    ("2 ** 3 ** 2", 512),  # right-associative
    ("-2 ** 2", -4),  # binds tighter than a sign on its left
    ("2 ** -1", 0.5),
    ("pow(3, 4)", 81),
    ("round(2.5)", 2),  # halves to even, as Python and numpy (RegNet) round
    ("round(3.5)", 4),
    ("floor(-1.5)", -2),
    ("ceil(1.2 * 3)", 4),  # EfficientNet's ceil(depth_mult * n)
    ("ceil(7)", 7),
    ("range(4)", (0, 1, 2, 3)),
    ("range(1, 7, 2)", (1, 3, 5)),
    ("range(3, 0, -1)", (3, 2, 1)),
    ("[3, 4, 6, 3][1:3]", None),  # as for an index: a list in brackets is not sliced directly
    ("len(range(10)[2:])", 8),
    ("[ceil(n * 1.5) for n in [1, 2, 3]]", (2, 3, 5)),
    ("[[i, j] for i in range(2)][1]", None),  # as for a list literal: no index straight after ']'
    ("sum([i * i for i in range(4)])", 14),
    ("[[i, 2 * i] for i in range(2)]", ((0, 0), (1, 2))),
    ("sum(range(5)[:3])", 3),
    ("range(6)[-2:]", (4, 5)),
    ("range(6)[:]", (0, 1, 2, 3, 4, 5)),
    ("range(6)[4:99]", (4, 5)),
    ("if 3 > 2 then 10 else 20", 10),
    ("(if 1 == 2 then 10 else 20) + 1", 21),
])
def test_expression_values(expr, expected):
    if expected is None:
        with pytest.raises(ArchError):
            value_of(expr)
        return
    value = value_of(expr)
    assert value == expected and type(value) is type(expected)


def test_log_is_natural_or_in_a_base():
    assert value_of("log(8, 2)") == pytest.approx(3.0)
    assert value_of("log(100)") == pytest.approx(math.log(100))


def torchvision_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """torchvision.models._utils._make_divisible, as written there."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0.5, max_value=5000, allow_nan=False), st.sampled_from([1, 4, 8, 16]))
def test_make_divisible_is_torchvisions(v, divisor):
    assert value_of(f"make_divisible({v!r}, {divisor})") == torchvision_make_divisible(v, divisor)


def test_indexing_counts_from_zero_and_from_the_end():
    net = archdsl.loads("network n(w = [8, 16, 32]) : [3, 8, 8] = conv3x3 w[0]; conv3x3 w[-1]; conv3x3 (w[1] * 2)")
    assert [layer.args["out"] for layer in net.layers()] == [8, 32, 32]


def test_only_the_arm_chosen_is_evaluated():
    net = archdsl.loads("network n(w = [8]) : [3, 8, 8] = conv3x3 (if len(w) > 1 then w[1] else w[0])")
    assert net.output_shape == (8, 8, 8)


@pytest.mark.parametrize("text, message", [
    ("network n : [3, 8, 8] = conv3x3 (2 ** 70)", "2 ** 70 is too large: numbers in a spec lie within ±2**62"),
    ("network n : [3, 8, 8] = conv3x3 (0 ** -1)", "division by zero (0 raised to a negative power)"),
    ("network n : [3, 8, 8] = conv3x3 len(4)", "len takes a list, not the whole number 4"),
    ("network n : [3, 8, 8] = conv3x3 ([1, 2] + 1)", "'+' takes numbers, not the list [1, 2]"),
    ("network n : [3, 8, 8] = conv3x3 log(0)", "log(0) is not defined"),
    ("network n : [3, 8, 8] = conv3x3 round(1, 2)", "round(...) takes 1 argument, not 2"),
    ("network n : [3, 8, 8] = conv3x3 max(range(0))", "max() of an empty list"),
    ("network n : [3, 8, 8] = conv3x3 (4, 4)", "conv3x3 out (output channels) must be a whole number, not the list [4, 4]"),
    ("network n(w = [8]) : [3, 8, 8] = conv3x3 w[1.0]", "a list index must be a whole number, not 1.0"),
    ("network n : [3, 8, 8] = if [1] then relu else id", "the list [1] is not a test"),
    ("network n : [3, 8, 8] = if [1] < [2] then relu else id", "'<' cannot compare the list [1] and the list [2]"),
    ("network n : [3, 8, 8] = for x in range(1.5) relu", "range takes whole numbers, not 1.5"),
    ("network n : [3, 8, 8] = conv3x3 len(range(4)[0.5:])", "a slice's ends must be whole numbers, not 0.5"),
    ("network n(c = 4) : [3, 8, 8] = conv3x3 c[1:]", "slicing takes a list, not the whole number 4"),
    ("network n(c = 4) : [3, 8, 8] = conv3x3 sum([i for i in c])", "for in a list takes a list, not the whole number 4"),
])
def test_expression_mistakes(text, message):
    assert error_of(text).message.startswith(message)


def test_a_range_past_the_list_limit_is_refused_before_it_is_made():
    start = time.process_time()
    err = error_of("network n : [3, 8, 8] = for i in range(10 ** 12) relu")
    assert isinstance(err, LimitError) and err.message == (
        f"range(1000000000000) has 1,000,000,000,000 items, more than the limit of {MAX_LIST:,} of a list")
    assert time.process_time() - start < 1


def test_symbolic_sizes_in_the_new_functions():
    net = archdsl.loads("network n : [3, H, W] = conv3x3 8; conv3x3 max(8, 4); avgpool2")
    assert str(net.output_shape[1]) == "floor(H / 2)"
    err = error_of("network n : [3, H, W] = conv3x3 (in.h ** 2)")
    assert err.message == "'**' of the symbolic size H"
    err = error_of("network n : [3, H, W] = conv3x3 log(in.h)")
    assert err.message == "log(...) of the symbolic size H"


# -- loops ---------------------------------------------------------------------------------------


STAGES = """
block stage(n, c, s) = conv3x3 c s=s; bn; relu; repeat (n - 1) <conv3x3 c; bn; relu>
network net(depths = [1, 2, 2], widths = [8, 16, 32]) : [3, 32, 32] =
    for i in range(len(depths)) stage(depths[i], widths[i], if i == 0 then 1 else 2);
    gap; flatten; linear 10
"""


def test_a_loop_makes_its_item_once_per_value_with_the_name_bound():
    net = archdsl.loads(STAGES)
    blocks = [node for node in net.ir.body if node.op == "block"]
    assert [b.call for b in blocks] == ["stage(1, 8, 1)", "stage(2, 16, 2)", "stage(2, 32, 2)"]
    assert [b.path for b in blocks] == ["stage_0", "stage_1", "stage_2"]
    assert net.output_shape == (10,)
    module = net.build()
    assert sum(p.numel() for p in module.parameters()) == net.params
    assert module(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_a_loop_over_a_list_of_lists_and_nested_loops():
    text = ("network n(cfg = [[8, 1], [16, 2]]) : [3, 16, 16] = "
            "for c in cfg <conv3x3 c[0] s=c[1]; relu>; for i in range(2) for j in range(2) conv1x1 (4 + i * 2 + j)")
    net = archdsl.loads(text)
    assert [layer.args["out"] for layer in net.layers() if layer.kind == "conv"] == [8, 16, 4, 5, 6, 7]
    assert net.output_shape == (7, 8, 8)


def test_list_parameters_from_the_command_line_and_the_api(tmp_path):
    spec = tmp_path / "stages.arch"
    spec.write_text(STAGES)
    result = CliRunner().invoke(app, ["compile", str(spec), "-p", "depths=[1,1]", "-p", "widths=(4, 8)", "--json"])
    assert result.exit_code == 0, result.output
    assert '"depths": [\n' in result.stdout or '"depths": [1, 1]' in result.stdout
    assert archdsl.load(spec, depths=[1, 1], widths=[4, 8]).params == archdsl.load(spec, depths=(1, 1), widths=(4, 8)).params
    result = CliRunner().invoke(app, ["compile", str(spec), "-p", "depths=[1,1"])
    assert result.exit_code == 1 and "'[1,1' is not a value: '[' is not closed" in result.stderr


def test_a_loop_bomb_is_refused_quickly():
    start = time.process_time()
    err = error_of("network n : [1, 8, 8] = for i in range(10000) for j in range(10000) relu")
    assert isinstance(err, LimitError) and err.message == "the network has more than 200,000 layers"
    err = error_of("block b(x) = for i in range(10000) relu\nnetwork n : [1, 8, 8] = for i in range(10000) b(i)")
    assert isinstance(err, LimitError)
    assert time.process_time() - start < 3


def test_a_loop_over_a_number_says_how_to_repeat():
    err = error_of("network n : [3, 8, 8] = for i in 3 relu")
    assert isinstance(err, ResolveError) and err.message == "for loops over a list, not the whole number 3"
    assert err.hint.startswith("to repeat an item n times: for i in range(n)")


# -- mul -----------------------------------------------------------------------------------------


def test_mul_is_torchvisions_squeeze_excitation(torchvision):
    se = torchvision.ops.SqueezeExcitation(16, 4).eval()
    net = archdsl.loads("network n : [16, 8, 8] = mul [ id | gap; conv1x1 4; relu; conv1x1 in.c; sigmoid ]")
    module = net.build().eval()
    with torch.no_grad():
        for ours, theirs in zip(module.parameters(), se.parameters(), strict=True):
            ours.copy_(theirs)
        x = torch.randn(2, 16, 8, 8)
        torch.testing.assert_close(module(x), se(x), atol=1e-6, rtol=0)
    assert net.params == sum(p.numel() for p in se.parameters())


def test_mul_broadcasts_and_names_both_shapes():
    net = archdsl.loads("network n : [4, 6, 6] = mul [ id | gmp_like ]".replace("gmp_like", "gap"))
    assert net.output_shape == (4, 6, 6)
    err = error_of("network n : [4, 6, 6] = mul [ id | conv1x1 2 ]")
    assert isinstance(err, ShapeError)
    assert err.message == ("mul needs shapes that broadcast (equal sizes, or 1 on one side), but branch 1 gives "
                           "4×6×6 and branch 2 gives 2×6×6")


# -- defaults ------------------------------------------------------------------------------------


def test_file_defaults_apply_to_every_call_that_does_not_give_the_argument():
    text = ("default conv bias=false\ndefault bn eps=0.001\n"
            "block cbr(c) = conv3x3 c; bn; relu\n"
            "network n : [3, 8, 8] = cbr(4); conv 8 1 bias=true; conv 8 k=1; dropout 0.3")
    layers = list(archdsl.loads(text).layers())
    assert [layer.args.get("bias") for layer in layers if layer.kind == "conv"] == [False, True, False]
    assert [layer.args["eps"] for layer in layers if layer.kind == "bn"] == [0.001]


@pytest.mark.parametrize("text, message", [
    ("default conv3x3 bias=false\nnetwork n : [3, 8, 8] = relu", "'conv3x3' is not a layer kind"),
    ("default cnv bias=false\nnetwork n : [3, 8, 8] = relu", "'cnv' is not a layer kind"),
    ("default conv biass=false\nnetwork n : [3, 8, 8] = relu", "conv has no argument 'biass'"),
    ("default conv bias=false\ndefault conv bias=true\nnetwork n : [3, 8, 8] = relu",
     "a default for conv bias is already set in this file"),
    ("default conv bias=2\nnetwork n : [3, 8, 8] = conv3x3 4", "conv3x3 bias (learn a bias) must be true or false"),
])
def test_default_mistakes(text, message):
    assert error_of(text).message.startswith(message)


# -- the formatter -------------------------------------------------------------------------------


def test_stochastic_depth_rates_from_a_prefix_sum():
    # torchvision's ConvNeXt: block j of stage s drops with rate * (blocks before it) / (all blocks - 1).
    text = ("network n(depths = [1, 2, 3], rate = 0.1) : [4, 8, 8] = for s in range(len(depths)) "
            "for i in range(depths[s]) droppath (rate * (sum(depths[:s]) + i) / (sum(depths) - 1))")
    rates = [layer.args["p"] for layer in archdsl.loads(text).layers()]
    assert rates == pytest.approx([0.1 * k / 5 for k in range(6)])


def test_efficientnets_stochastic_depth_from_scaled_stage_lengths():
    # torchvision: block k of all (ceil(n * depth) per stage) drops with 0.2 * k / total.
    text = ("network n(rows = [1, 2, 2], depth = 1.2) : [4, 8, 8] = "
            "for s in range(len(rows)) for j in range(ceil(rows[s] * depth)) "
            "droppath (0.2 * (sum([ceil(n * depth) for n in rows[:s]]) + j) / sum([ceil(n * depth) for n in rows]))")
    rates = [layer.args["p"] for layer in archdsl.loads(text).layers()]
    assert rates == pytest.approx([0.2 * k / 8 for k in range(8)])


def test_the_formatter_prints_the_new_syntax_canonically():
    text = ("default  conv bias=false\n"
            "network n(d=[1,2,3,],k=(1,7),one=(5,)):[1,8,8]=for i in range( len(d) ) <conv3x3 d[ i ];relu>;"
            "mul[id|gap;conv1x1 in.c;sigmoid];conv3x3 (if d[0]>1 then 2 else 2**2);conv3x3 sum(d[ 1 : ])\n")
    assert format_source(Source("x.arch", text)) == (
        "default conv bias=false\n\n"
        "network n(d = [1, 2, 3], k = (1, 7), one = (5,)) : [1, 8, 8] = for i in range(len(d)) <conv3x3 d[i]; relu>; "
        "mul [ id | gap; conv1x1 in.c; sigmoid ]; conv3x3 (if d[0] > 1 then 2 else 2 ** 2); conv3x3 sum(d[1:])\n")


# -- channel selections --------------------------------------------------------------------------

SHUFFLE_UNIT = """
block unit = concat [ chunk 2 0
                    | chunk 2 1; conv1x1 (in.c // 2) bias=false; bn; relu;
                      conv3x3 (in.c // 2) groups=(in.c // 2) bias=false; bn; conv1x1 (in.c // 2) bias=false; bn; relu ];
             shuffle 2
network n : [48, 8, 8] = unit
"""


def test_chunk_and_shuffle_make_torchvisions_shufflenet_unit(torchvision):
    from torchvision.models.shufflenetv2 import InvertedResidual

    reference = InvertedResidual(48, 48, 1).eval()
    torch.manual_seed(0)
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    net = archdsl.loads(SHUFFLE_UNIT)
    module = net.build().eval()
    with torch.no_grad():
        for (ours, a), (theirs, b) in zip(module.state_dict().items(), reference.state_dict().items(), strict=True):
            assert a.shape == b.shape, (ours, theirs)
            a.copy_(b)
        x = torch.randn(2, 48, 8, 8)
        torch.testing.assert_close(module(x), reference(x), atol=1e-5, rtol=0)
    assert net.params == sum(p.numel() for p in reference.parameters())


def test_slice_takes_a_run_of_channels():
    net = archdsl.loads("network n : [10, 4, 4] = concat [ slice 0 3 | slice 3 10; conv1x1 2 ]")
    assert net.output_shape == (5, 4, 4)
    x = torch.randn(1, 10, 4, 4)
    module = net.build()
    torch.testing.assert_close(module(x)[:, :3], x[:, :3])


@pytest.mark.parametrize("text, message", [
    ("network n : [10, 4, 4] = chunk 4 0", "chunk: 4 equal parts do not divide the 10 channels"),
    ("network n : [10, 4, 4] = chunk 2 2", "chunk: part 2 of 2 does not exist: parts count from 0"),
    ("network n : [10, 4, 4] = slice 4 12", "slice 4 12 goes past the 10 channels"),
    ("network n : [10, 4, 4] = slice 4 4", "slice 4 4 takes no channel: the end must be past the start"),
])
def test_selection_mistakes(text, message):
    assert error_of(text).message == message
