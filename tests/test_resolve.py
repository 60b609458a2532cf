"""Resolution: names, arguments and defaults, ``in.c``, ``if``, ``repeat``, branches, the naming of
paths (which are the built module's state_dict keys), recursion and import errors.

Errors are checked for their kind, place and the facts they must state (the cycle, the file); their
full wording is in the diagnostics goldens (tests/cases/errors/).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import archdsl
from archdsl import ir
from archdsl.errors import LimitError, ResolveError, ShapeError, UsageError
from archdsl.resolve import Limits


def paths(net: archdsl.CompiledNetwork) -> list[str]:
    return [node.path for node in ir.walk(net.ir.body)]


def layer_args(net: archdsl.CompiledNetwork) -> list[tuple[str, dict]]:
    return [(layer.spelling, layer.args) for layer in net.layers()]


def error(text: str, **params) -> archdsl.ArchError:
    with pytest.raises(archdsl.ArchError) as info:
        archdsl.loads(text, **params)
    return info.value


# -- naming ----------------------------------------------------------------------------------------


VGG = "block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2\n"


def test_paths_name_blocks_and_layers_in_order() -> None:
    net = archdsl.loads(VGG + "network v : [1, 32, 32] = vgg(2, 8); vgg(1, 16); flatten; fc 10")
    assert paths(net) == [
        "vgg_0", "vgg_0.conv_0", "vgg_0.relu_0", "vgg_0.conv_1", "vgg_0.relu_1", "vgg_0.maxpool_0",
        "vgg_1", "vgg_1.conv_0", "vgg_1.relu_0", "vgg_1.maxpool_0",
        "flatten_0", "linear_0",
    ]  # fmt: skip


def test_branches_number_their_paths_and_count_names_apart() -> None:
    net = archdsl.loads(
        "network r : [4, 8, 8] = conv3x3 4; add [ conv3x3 4; bn; conv3x3 4 | id ]; concat [ id | conv1x1 2 ]; conv1x1 3"
    )
    assert paths(net) == [
        "conv_0",
        "add_0", "add_0.b0.conv_0", "add_0.b0.bn_0", "add_0.b0.conv_1", "add_0.b1.id_0",
        "concat_0", "concat_0.b0.id_0", "concat_0.b1.conv_0",
        "conv_1",
    ]  # fmt: skip


def test_paths_are_the_state_dict_keys() -> None:
    net = archdsl.loads(
        "block res(c) = add [ conv3x3 c; bn | conv1x1 c ]; relu\n"
        "network r : [3, 8, 8] = res(4); res(4); gap; flatten; linear 2"
    )
    expected = set()
    for layer in net.layers():
        if layer.kind in ("conv", "linear"):
            expected |= {f"{layer.path}.weight", f"{layer.path}.bias"}
        elif layer.kind == "bn":
            expected |= {f"{layer.path}.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    with torch.device("meta"):
        assert set(net.build().state_dict()) == expected
    assert "res_1.add_0.b1.conv_0.weight" in expected


# -- arguments --------------------------------------------------------------------------------------


def test_block_arguments_by_position_keyword_and_default() -> None:
    text = "block b(c, k = 3, s = k - 2) = conv c k=k s=s\nnetwork n : [1, 64, 64] = b(4); b(5, 5); b(k=4, c=6); b(7, s=2)"
    convs = [(a["out"], a["k"], a["s"]) for _, a in layer_args(archdsl.loads(text))]
    assert convs == [(4, 3, 1), (5, 5, 3), (6, 4, 2), (7, 3, 2)]
    assert [node.call for node in archdsl.loads(text).ir.body] == ["b(4, 3, 1)", "b(5, 5, 3)", "b(6, 4, 2)", "b(7, 3, 2)"]


def test_layer_arguments_bind_by_slot_and_keyword() -> None:
    net = archdsl.loads("network n : [2, 16, 16] = conv 8 3 s=2; conv3x3 8 groups=2 bias=0; maxpool3 s=2; maxpool 2; "
                        "adaptiveavgpool 3; adaptiveavgpool 2 1; flatten; dropout; linear 5 bias=false; leakyrelu slope=-0.5")
    assert layer_args(net) == [
        ("conv", {"out": 8, "k": 3, "s": 2, "p": 0, "d": 1, "groups": 1, "bias": True}),
        ("conv3x3", {"out": 8, "k": 3, "s": 1, "p": 1, "d": 1, "groups": 2, "bias": False}),
        ("maxpool3", {"k": 3, "s": 2, "p": 0, "ceil": False}),
        ("maxpool", {"k": 2, "s": 2, "p": 0, "ceil": False}),
        ("adaptiveavgpool", {"h": 3, "w": 3}),
        ("adaptiveavgpool", {"h": 2, "w": 1}),
        ("flatten", {}),
        ("dropout", {"p": 0.5}),
        ("linear", {"out": 5, "bias": False}),
        ("leakyrelu", {"slope": -0.5}),
    ]


@pytest.mark.parametrize(
    ("text", "line", "column", "fact"),
    [
        ("block b(c) = conv3x3 c\nnetwork n : [1, 8, 8] = b(2, 3)", 2, 30, "takes 1 argument"),
        ("block b(c) = conv3x3 c\nnetwork n : [1, 8, 8] = b(d=3)", 2, 27, "no parameter 'd'"),
        ("block b(c) = conv3x3 c\nnetwork n : [1, 8, 8] = b(2, c=3)", 2, 30, "given twice"),
        ("block b(c) = conv3x3 c\nnetwork n : [1, 8, 8] = b()", 2, 25, "needs its parameter 'c'"),
        ("network n : [1, 8, 8] = conv3x3 8 k=5", 1, 35, "already sets k=3"),
        ("network n : [1, 8, 8] = conv3x3 8 q=5", 1, 35, "no argument 'q'"),
        ("network n : [1, 8, 8] = conv3x3", 1, 25, "needs its argument 'out'"),
        ("network n : [1, 8, 8] = relu 3", 1, 30, "positional"),
        ("network n : [1, 8, 8] = conv 8 // 2 k=3 s=0", 1, 41, "must be positive"),
        ("network n : [1, 8, 8] = conv 8 / 2 k=3", 1, 30, "whole number"),
        ("network n : [1, 8, 8] = dropout 1", 1, 33, "[0, 1)"),
        ("network n : [1, 8, 8] = conv 8 k=3 bias=2", 1, 36, "true or false"),
        ("network n : [1, 8, 8] = conv3x3 c", 1, 33, "unknown name 'c'"),
        ("network n : [1, 8, 8] = conv3x 4", 1, 25, "conv3x3"),
        ("network n : [1, 8, 8] = conv 3 k=2 // 0", 1, 34, "division by zero"),
    ],
)
def test_argument_errors_are_located(text: str, line: int, column: int, fact: str) -> None:
    err = error(text)
    assert isinstance(err, ResolveError)
    assert (err.line, err.column) == (line, column), err.render()
    assert fact in err.render()


# -- in.c, if, repeat --------------------------------------------------------------------------------


def test_in_sizes_read_the_shape_entering_the_block() -> None:
    text = (
        "block transition(c = in.c // 2) = conv1x1 c; avgpool2\n"
        "block square = adaptiveavgpool in.h // 2 in.w\n"
        "network n : [6, 8, 12] = conv3x3 in.c * 2; transition(); transition(5); square"
    )
    net = archdsl.loads(text)
    assert [layer.out_shape for layer in net.layers()] == [(12, 8, 12), (6, 8, 12), (6, 4, 6), (5, 4, 6), (5, 2, 3), (5, 1, 3)]
    err = error("block b = conv1x1 in.h\nnetwork n : [6, 8, 8] = flatten; b")
    assert isinstance(err, ShapeError) and (err.line, err.column) == (1, 19)


def test_if_takes_one_branch_and_leaves_the_other_unresolved() -> None:
    text = (
        "block res(c, s = 1) = add [ conv3x3 c s=s | if s != 1 or in.c != c then conv1x1 c s=s else id ]\n"
        "network n : [4, 8, 8] = res(4); res(8); res(8, 2); if 1 > 2 then conv 4 k=99 else relu"
    )
    shortcuts = [layer.spelling for layer in archdsl.loads(text).layers() if ".b1." in layer.path]
    assert shortcuts == ["id", "conv1x1", "conv1x1"]
    assert [layer.spelling for layer in archdsl.loads(text).layers()][-1] == "relu"


def test_repeat_counts_nest_and_may_be_zero() -> None:
    net = archdsl.loads("block b(n) = repeat n <repeat n - 1 conv3x3 2; relu>\nnetwork n : [1, 8, 8] = b(3); repeat 0 relu; b(1)")
    assert [node.spelling for node in net.layers()] == ["conv3x3", "conv3x3", "relu"] * 3 + ["relu"]
    assert paths(net)[:4] == ["b_0", "b_0.conv_0", "b_0.conv_1", "b_0.relu_0"]


@pytest.mark.parametrize(("count", "fact"), [("0 - 1", "must not be negative"), ("3 / 2", "whole number")])
def test_bad_repeat_counts(count: str, fact: str) -> None:
    err = error(f"network n : [1, 8, 8] = repeat {count} relu")
    assert isinstance(err, ResolveError) and (err.line, err.column) == (1, 32) and fact in err.render()


# -- branches and shapes --------------------------------------------------------------------------------


def test_concat_sums_channels_and_add_keeps_the_shape() -> None:
    net = archdsl.loads("network n : [4, 8, 8] = concat [ id | conv1x1 3 | maxpool3 s=1 p=1 ]; add [ id | conv3x3 11 ]")
    assert [node.out_shape for node in net.ir.body] == [(11, 8, 8), (11, 8, 8)]


@pytest.mark.parametrize(
    ("body", "fact"),
    [
        ("add [ id | conv3x3 8 ]", "4×8×8"),
        ("add [ id | maxpool2 ]", "4×4×4"),
        ("concat [ id | maxpool2 ]", "H×W"),
        ("concat [ id | flatten ]", "256"),
    ],
)
def test_joins_that_do_not_fit_show_both_shapes(body: str, fact: str) -> None:
    err = error(f"network n : [4, 8, 8] = {body}")
    assert isinstance(err, ShapeError) and (err.line, err.column) == (1, 25)
    assert fact in err.message


def test_output_assertion_is_checked_at_its_place() -> None:
    err = error("network n(classes = 10) : [1, 8, 8] -> [classes] = flatten; linear 9")
    assert isinstance(err, ShapeError) and (err.line, err.column) == (1, 40)
    assert archdsl.loads("network n(classes = 10) : [1, 8, 8] -> [classes] = flatten; linear classes").output_shape == (10,)


def test_errors_inside_blocks_note_the_call_site() -> None:
    err = error("block t = conv 8 k=9\nnetwork n : [1, 8, 8] = t")
    assert isinstance(err, ShapeError) and (err.line, err.column) == (1, 11)
    assert [(where.line, where.column) for _, where in err.notes] == [(2, 25)]


# -- recursion, imports, limits ---------------------------------------------------------------------------


def test_recursive_blocks_show_the_chain() -> None:
    err = error("block a = b\nblock b = <relu; a>\nnetwork n : [1, 8, 8] = a")
    assert isinstance(err, ResolveError) and (err.line, err.column) == (2, 18)
    assert "a -> b -> a" in err.message
    err = error("block a(c) = conv3x3 c; a(c)\nnetwork n : [1, 8, 8] = a(2)")
    assert "a -> a" in err.message


def write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_imports_share_blocks_relative_to_the_importing_file(tmp_path: Path) -> None:
    write(tmp_path, {
        "main.arch": 'import "lib/a.arch"\nimport "lib/b.arch"\nnetwork n : [1, 8, 8] = one(); two()',
        "lib/a.arch": 'import "common.arch"\nblock one = shared()',
        "lib/b.arch": 'import "common.arch"\nblock two = shared()',
        "lib/common.arch": "block shared = conv3x3 2",
    })  # fmt: skip
    net = archdsl.load(tmp_path / "main.arch")
    assert paths(net) == ["one_0", "one_0.shared_0", "one_0.shared_0.conv_0", "two_0", "two_0.shared_0", "two_0.shared_0.conv_0"]
    assert net.layers().__next__().span.file.endswith("common.arch")


def test_import_cycle_shows_the_whole_chain(tmp_path: Path, monkeypatch) -> None:
    write(tmp_path, {
        "a.arch": 'import "sub/b.arch"\nnetwork n : [1, 8, 8] = relu',
        "sub/b.arch": 'import "c.arch"',
        "sub/c.arch": '\nimport "../a.arch"',
    })  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ResolveError) as info:
        archdsl.load("a.arch")
    err = info.value
    assert (Path(err.file).as_posix(), err.line, err.column) == ("sub/c.arch", 2, 1)
    assert "a.arch -> sub/b.arch -> sub/c.arch -> a.arch" in err.message


def test_missing_import_is_located(tmp_path: Path) -> None:
    write(tmp_path, {"m.arch": '# first\nimport "nothere.arch"\nnetwork n : [1, 8, 8] = relu'})
    with pytest.raises(ResolveError) as info:
        archdsl.load(tmp_path / "m.arch")
    assert (info.value.line, info.value.column) == (2, 1)
    assert "nothere.arch" in info.value.message


def test_a_block_defined_twice_across_imports(tmp_path: Path) -> None:
    write(tmp_path, {"m.arch": 'import "l.arch"\nblock b = relu\nnetwork n : [1, 8, 8] = b', "l.arch": "block b = id"})
    with pytest.raises(ResolveError) as info:
        archdsl.load(tmp_path / "m.arch")
    assert "defined twice" in info.value.message
    assert info.value.line in (1, 2) and info.value.notes


def test_network_parameters() -> None:
    text = "network n(c = 4, classes = 10) : [c, 8, 8] = flatten; linear classes"
    assert (archdsl.loads(text).input_shape, archdsl.loads(text, classes=3).output_shape) == ((4, 8, 8), (3,))
    assert isinstance(error(text, clases=3), UsageError)


def test_huge_repeats_are_refused_before_expansion() -> None:
    err = error("network n : [1, 8, 8] = repeat 1000000000 <conv3x3 4; relu>")
    assert isinstance(err, LimitError) and (err.line, err.column) == (1, 32)
    err = error("network n : [1, 8, 8] = conv3x3 100000", limits=Limits(max_params=1000))
    assert isinstance(err, LimitError)


@pytest.mark.parametrize(("text", "value"), [("3", 3), ("-2", -2), ("+4", 4), ("0.5", 0.5), ("1e3", 1000.0),
                                             ("TRUE", True), (" false ", False), ("4611686018427387904", 2**62)])
def test_parameter_values_from_the_command_line(text: str, value) -> None:
    from archdsl.resolve import parse_value

    assert (type(parse_value(text)), parse_value(text)) == (type(value), value)


@pytest.mark.parametrize(("text", "fact"), [("inf", "is not a number"), ("nan", "is not a number"),
                                            ("1x", "is not a number"), ("1e999", "1e999 is too large"),
                                            ("9" * 5000, "(5,000 digits) is too large"),
                                            ("4611686018427387905", "is too large")])
def test_parameter_values_that_are_refused(text: str, fact: str) -> None:
    from archdsl.resolve import parse_value

    with pytest.raises(UsageError, match=re.escape(fact)):
        parse_value(text)

