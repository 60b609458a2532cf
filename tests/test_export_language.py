"""The exports (archdsl/export/) of the language's newer constructs: lists, indexing, the conditional expression,
``**`` and the functions, ``for`` loops, ``mul``, file defaults, the newer layer kinds, and the zoo, which uses
them all.

As in test_export.py, the oracle is archdsl's own module: the generated Python class must load its
``state_dict`` with ``strict=True`` and give its outputs exactly, at the exported parameters and at others
(the class's constructor arguments); the ONNX and TorchScript files must give its outputs too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_export import ONNX_TOLERANCE, assert_reproduces, assert_ruff_clean, built, import_source

import archdsl
from archdsl import zoo
from archdsl.errors import ArchError, BackendError
from archdsl.export.python import network_class_name, python_source
from archdsl.export.torchscript import write_torchscript

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

# Each spec holds one group of constructs; the settings are other constructor arguments it is checked at.
SPECS = {
    "expressions": ("""
block widths(ws, i = 0) = conv3x3 ws[i]; conv3x3 ws[-1]; relu

network expressions(ws = [4, 6, 8], wm = 2.5, n = 2) : [3, 12, 12] =
    widths(ws);
    conv1x1 round(wm);
    conv1x1 round(wm + 1) + floor(wm) + ceil(wm) + floor(3) + ceil(4);
    conv1x1 (if len(ws) > 3 then ws[3] else ws[0]);
    conv1x1 2 ** n + pow(n, 3) - 2 ** 2 ** 1 + (if -2 ** 2 < 0 then 1 else 9);
    conv1x1 round(log(ws[2], 2)) + round(log(wm)) + 1;
    conv1x1 sum(ws) // len(ws) + sum(range(n));
    conv1x1 max(ws) + min(ws) + max(1, 2, n) + min(range(1, 5, 2));
    conv1x1 make_divisible(ws[1] * wm, 8) + make_divisible(3, 8, 16);
    conv1x1 (3, 4, 5)[-1] + round(2.5) + len(((1, 2), (3,))[0]);
    conv1x1 (if ws == [4, 6, 8] then 2 else 3) + (if range(n) == [0, 1] then 1 else 5);
    conv1x1 sum(ws[:n]) + len(ws[1:]) + ws[-2:][0] + len(range(9)[n:-1]);
    conv1x1 sum([ceil(w * wm) for w in ws]) // 4 + len([[i, i] for i in range(n)]);
    flatten; linear len(range(0, 10, 3))
""", {"ws": [4, 6, 8, 10], "wm": 1.5, "n": 3}),
    "loops": ("""
block unit(c, s = 1) = conv3x3 c s=s; bn; relu
block stage(n, c, s) = unit(c, s); repeat n - 1 unit(c)
block shadow(i) = for i in range(i) conv1x1 4 + i
block fire(s) = conv1x1 s; relu; concat [ conv1x1 2 * s | conv3x3 2 * s ]

network loops(depths = [1, 2], widths = [4, 8], fires = [[2], [3, 4]]) : [3, 16, 16] =
    conv3x3 4;
    for i in range(len(depths)) stage(depths[i], widths[i], if i > 0 then 2 else 1);
    for w in widths <conv1x1 w; relu>;
    for f in fires <maxpool k=2 s=1 ceil=true; for s in f fire(s)>;
    for d in depths repeat d unit(4);
    shadow(2);
    for k in [3, 5] conv 4 k=k p=k // 2;
    for x in [] conv1x1 7;
    for x in [6] conv1x1 x;
    for j in range(2, 6, 2) <conv1x1 j; if j > 2 then relu else id>;
    if len(depths) > 1 then <for w in widths conv1x1 w> else id;
    add [ for w in widths conv1x1 w | conv1x1 widths[-1] ];
    conv1x1 4;
    for u in [12, 10] <flatten; linear u>
""", {"depths": [2, 1, 1], "widths": [4, 6, 8], "fires": [[2, 2], [3]]}),
    "gates": ("""
block se(r) = mul [ id | gap; conv1x1 r; relu; conv1x1 in.c; sigmoid ]
block gate_first = mul [ gap; conv1x1 in.c; hardsigmoid | id | conv1x1 in.c ]

network gates(r = 2, c = 8) : [4, 8, 8] =
    conv3x3 c; se(r); gate_first; mul [ id | id ]; mul [ gap | gmp ]; flatten; linear 3
""", {"r": 3, "c": 6}),
    "defaults": ("""
default conv bias=false
default bn eps=0.001

network defaults(c = 8) : [3, 8, 8] = conv3x3 c; bn; relu; conv3x3 c bias=true; flatten; linear 2
""", {"c": 4}),
    "kinds": ("""
block conv_bn(c, k = 1, s = 1, p = 0) = conv c k=k s=s p=p; bn; relu6

network kinds(c = 8, groups = 2) : [3, 17, 17] =
    conv_bn(c, (1, 3), p=(0, 1)); conv_bn(c, 3, 2);
    conv 8 k=(3, 1) p=(1, 0); silu; hardswish; hardsigmoid; elu alpha=0.5; selu; mish; gelu approximate=true; gelu;
    ln; gn groups; scale; droppath 0.1; shuffle groups;
    concat [ chunk 2 0 | chunk 2 1; conv1x1 4 ];
    slice 0 6;
    maxpool k=3 s=2 ceil=true; avgpool k=3 s=1 p=1 ceil=true count_include_pad=false;
    adaptivemaxpool 2; flatten; ln; linear 5; scale
""", {"groups": 4}),
}  # fmt: skip


def load(name: str, **params) -> archdsl.CompiledNetwork:
    return archdsl.loads(SPECS[name][0], path=f"{name}.arch", **params)


def exported(name: str, folder: Path):
    """The spec's network exported at its defaults, imported: the module and its network class."""
    net = load(name)
    module = import_source(python_source(net), folder)
    return module, getattr(module, network_class_name(net))


@pytest.mark.parametrize("name", SPECS)
def test_each_construct_exports_to_the_same_module(name: str, tmp_path: Path) -> None:
    _, net_class = exported(name, tmp_path)
    assert_reproduces(load(name), net_class, tmp_path)
    settings = SPECS[name][1]
    assert_reproduces(load(name, **settings), net_class, tmp_path, **settings)


def test_expressions_are_written_as_python(tmp_path: Path) -> None:
    source = python_source(load("expressions"))
    for text in ("ws[-1]", "round(wm)", "math.floor(wm)", "math.ceil(wm)", "2**n + pow(n, 3)", "math.log(ws[2]) / math.log(2)",
                 "sum(ws) // len(ws)", "max(ws) + min(ws)", "make_divisible(ws[1] * wm, 8)",
                 "ws[3] if len(ws) > 3 else ws[0]", "tuple(ws) == (4, 6, 8)", "tuple(range(n)) == (0, 1)"):
        assert text in source, text
    assert "\nimport math\n" in source and "\ndef make_divisible(v, d, least=None):" in source
    assert "make_divisible(3, 8, 16)" not in source and "(3, 4, 5)[-1]" not in source  # known values are folded
    module = import_source(source, tmp_path)
    for args, expected in [((15, 8), 16), ((3, 8, 16), 16), ((10, 8), 16), ((33.6, 8), 32), ((7, 8), 8)]:
        assert module.make_divisible(*args) == expected  # torchvision's _make_divisible


def test_loops_are_python_for_loops_named_as_archdsl_names_them() -> None:
    source = python_source(load("loops"))
    # range(n): the value is the index; another list: enumerate; counts that vary with the value: a running count.
    assert "for i in range(len(depths)):" in source and 'self.add_module(f"stage_{i}", stage)' in source
    assert "for i, w in enumerate(widths):" in source
    assert "n_fire = 0\n" in source and "n_fire += len(f)" in source
    assert 'self.add_module(f"fire_{n_fire + j}", fire)' in source
    assert "for i2 in range(i):" in source  # a loop's name that shadows a parameter gets its own local
    assert "for i, k in enumerate((3, 5)):" in source and "pair(" not in source  # k is a number
    # A body that turns an image into a vector cannot be one loop: over a known list, it is written out.
    assert "self.flatten_1 = nn.Flatten()\n        self.linear_1 = nn.Linear(12, 10)" in source


def test_a_window_argument_that_may_be_a_pair_is_read_through_pair() -> None:
    source = python_source(load("kinds"))
    assert "out_size(height, pair(k)[0], s, pair(p)[0])" in source  # k and p are pairs somewhere, s never
    assert "\ndef pair(value):" in source
    assert "pair(" not in python_source(archdsl.load("resnet18"))  # strides are whole numbers throughout


def test_mul_is_a_mul_join_with_the_broadcast_shape() -> None:
    source = python_source(load("gates"))
    assert "\nclass Mul(Join):" in source and "self.mul_0 = Mul(b0, b1)" in source
    assert "self.out_shape = (max(channels, in_shape[0]), height, width)" in source  # id times a C x 1 x 1 gate


def test_file_defaults_are_written_as_arguments() -> None:
    source = python_source(load("defaults"))
    assert "nn.Conv2d(3, c, 3, padding=1, bias=False)" in source and "nn.Conv2d(c, c, 3, padding=1)" in source
    assert "nn.BatchNorm2d(c, eps=0.001)" in source


def test_an_unknown_function_is_refused_at_its_place() -> None:
    # Only reachable through an arm never taken: resolve refuses the unknown name wherever it is evaluated.
    net = archdsl.loads("block b(x) = if x > 1 then conv1x1 root(x) else relu\nnetwork n : [1, 4, 4] = b(1)\n",
                        path="x.arch")
    with pytest.raises(BackendError) as caught:
        python_source(net)
    assert (caught.value.line, caught.value.column) == (1, 36)
    assert caught.value.message == "unknown function 'root'"


def test_generated_files_pass_ruff(tmp_path: Path) -> None:
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (pip install ruff: a test-only dependency)")
    for name in SPECS:
        (tmp_path / f"{name}.py").write_text(python_source(load(name)), encoding="utf-8")
    for name in ("efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf", "inception_v3", "squeezenet1_0",
                 "shufflenet_v2_x1_0"):
        (tmp_path / f"{name}.py").write_text(python_source(archdsl.load(name)), encoding="utf-8")
    assert_ruff_clean(tmp_path)


# -- the zoo ---------------------------------------------------------------------------------------

FAMILY_FIRST = {path: name for name, path in reversed(zoo.index().items())}.values()


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=() if name in FAMILY_FIRST else pytest.mark.slow) for name in zoo.index()
])  # fmt: skip
def test_every_zoo_builder_exports_with_archdsl_s_state_dict(name: str, tmp_path: Path) -> None:
    net = archdsl.load(name)
    net_class = getattr(import_source(python_source(net), tmp_path), network_class_name(net))
    with torch.device("meta"):  # no memory, no time: the names and shapes only
        ours = {k: v.shape for k, v in net.build().state_dict().items()}
        theirs = {k: v.shape for k, v in net_class().state_dict().items()}
    assert list(theirs) == list(ours) and theirs == ours


# One builder per family, at settings that keep it small where the defaults are large; the outputs are compared.
ZOO = {
    "alexnet": ("alexnet", {"classes": 10}, True),
    "densenet": ("densenet121", {"blocks": [2, 3], "classes": 10}, False),
    "efficientnet": ("efficientnet_b1", {"width": 0.5, "depth": 0.5}, False),
    "efficientnet_v2": ("efficientnet_v2_s", {"classes": 10}, True),
    "googlenet": ("googlenet", {"classes": 10}, True),
    "inception_v3": ("inception_v3", {"classes": 10}, True),
    "mnasnet": ("mnasnet0_5", {"classes": 10}, False),
    "mobilenet_v2": ("mobilenet_v2", {"width": 0.5}, False),
    "mobilenet_v3": ("mobilenet_v3_small", {"classes": 10}, False),
    "regnet_x": ("regnet_x_400mf", {"classes": 10}, False),
    "regnet_y": ("regnet_y_400mf", {"classes": 10}, True),
    "resnet": ("resnet50", {"layers": [1, 1, 1, 1], "classes": 10}, False),
    "resnext": ("resnext50_32x4d", {"layers": [1, 2], "classes": 10}, True),
    "shufflenet_v2": ("shufflenet_v2_x0_5", {"repeats": [1, 2, 1]}, False),
    "squeezenet": ("squeezenet1_0", {"stages": [[4], [8, 8], [16]]}, False),
    "vgg": ("vgg11_bn", {"layers": [1, 2]}, True),  # its classifier holds 120M parameters whatever the stages
}  # fmt: skip


@pytest.mark.parametrize("family", [pytest.param(family, marks=pytest.mark.slow if slow else ())
                                    for family, (_, _, slow) in ZOO.items()])
def test_zoo_exports_reproduce_archdsl_s_module(family: str, tmp_path: Path) -> None:
    name, settings, _ = ZOO[family]
    if name not in zoo.index():
        pytest.skip(f"the zoo has no {name}")
    net_class = getattr(import_source(python_source(archdsl.load(name)), tmp_path), network_class_name(archdsl.load(name)))
    assert_reproduces(archdsl.load(name, **settings), net_class, tmp_path, **settings)


# -- ONNX and TorchScript -------------------------------------------------------------------------

# A loop whose names vary with its values, a gate, and the newer kinds, on a small input.
COMBINED = """
block se(r) = mul [ id | gap; conv1x1 r; relu; conv1x1 in.c; hardsigmoid ]
block unit(c, k) = conv c k=k p=k // 2 groups=2 bias=false; bn; hardswish; se(make_divisible(c / 4, 2))

network combined(stages = [[8, 3], [8, 5, 1], [12, 3]]) : [4, 16, 16] =
    conv3x3 8; ln; silu;
    for st in stages <for k in range(1, len(st)) unit(st[0], st[k])>;
    shuffle 2; concat [ chunk 2 0 | chunk 2 1; conv1x1 6; gn 2; mish ]; slice 2 12;
    maxpool k=3 s=2 ceil=true; avgpool k=3 s=1 p=1 count_include_pad=false; gelu approximate=true; elu; selu;
    relu6; scale; droppath 0.2; gmp; flatten; linear 10; hardsigmoid
"""


def combined() -> archdsl.CompiledNetwork:
    return archdsl.loads(COMBINED, path="combined.arch")


def test_the_combined_network_exports_to_python_too(tmp_path: Path) -> None:
    net = combined()
    assert_reproduces(net, getattr(import_source(python_source(net), tmp_path), network_class_name(net)), tmp_path)


def test_onnx_of_loops_gates_and_the_newer_kinds_runs_to_the_same_outputs(tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    from archdsl.export.onnx import write_onnx

    net = combined()
    module = built(net)
    path = tmp_path / "combined.onnx"
    write_onnx(module, net.input_shape, path, net.params)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(2))
    (y,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(y, module(x).numpy(), **ONNX_TOLERANCE)


def test_torchscript_of_loops_gates_and_the_newer_kinds_scripts_to_the_same_outputs(tmp_path: Path) -> None:
    net = combined()
    module = built(net)
    path = tmp_path / "combined.pt"
    how = write_torchscript(module, net.input_shape, path)
    assert how == "scripted"
    x = torch.randn(3, *net.input_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(torch.jit.load(str(path))(x), module(x))


# -- random programs of loops over lists -----------------------------------------------------------

# Names that hold numbers where an item is generated: the network's n and, inside loops, their variables.
_SIZES = ("1", "2", "n", "xs[0]", "xs[-1]", "len(xs)", "min(xs)", "max(1, n - 1)", "(if n > 1 then 2 else 1)")


@st.composite
def _items(draw, depth: int, numbers: tuple[str, ...], lists: tuple[str, ...]) -> str:
    """One item: layers whose names count on across loops, repeats, ifs and joins, over ``numbers`` and the lists
    of numbers ``lists`` in scope (``rows`` is a list of them)."""
    size = draw(st.sampled_from(numbers))
    choices = ["conv", "relu", "block"] + (["repeat", "for", "for", "if", "concat", "mul", "group"] if depth < 3 else [])
    kind = draw(st.sampled_from(choices))
    inner = _items(depth + 1, numbers, lists)
    if kind == "conv":
        return f"conv1x1 {size}"
    if kind == "relu":
        return draw(st.sampled_from(["relu", "id", "hardswish"]))
    if kind == "block":
        return draw(st.sampled_from([f"widths({draw(st.sampled_from(lists))})", f"unit({size})"]))
    if kind == "repeat":
        return f"repeat {draw(st.sampled_from(['0', '1', '2', size]))} {draw(inner)}"
    if kind == "if":
        return f"if {size} > 1 then {draw(inner)} else {draw(inner)}"
    if kind == "concat":
        return f"concat [ {draw(inner)} | {draw(inner)} ]"
    if kind == "mul":
        return f"mul [ id | {draw(inner)}; gap; conv1x1 1; sigmoid ]"
    if kind == "group":
        return f"<{draw(inner)}; {draw(inner)}>"
    name = f"v{depth}"
    over = draw(st.sampled_from([*lists, "rows", "range(n)", "range(len(xs))", "range(1, 4, 2)", "[1, 2]", "[]", "[3]"]))
    if over == "rows":  # its items are lists
        body = _items(depth + 1, numbers, (*lists, name))
    else:
        body = _items(depth + 1, (*numbers, f"min({name}, 3) + 1"), lists)
    return f"for {name} in {over} {draw(body)}"


@st.composite
def loop_programs(draw) -> tuple[str, dict]:
    """A network of loops over its list parameters, and other values for them."""
    body = draw(st.lists(_items(0, _SIZES, ("xs", "rows[0]")), min_size=1, max_size=4))
    text = ("block widths(ws) = for w in ws <conv1x1 w; relu>\n"
            "block unit(c) = conv1x1 c; relu\n"
            "network loops(n = 2, xs = [1, 3], rows = [[2], [1, 2]]) : [2, 4, 4] =\n    "
            + ";\n    ".join(body) + ";\n    gap; flatten; linear 3\n")
    small = st.lists(st.integers(1, 3), min_size=1, max_size=3)
    other = {"n": draw(st.integers(1, 3)), "xs": draw(small), "rows": draw(st.lists(small, min_size=1, max_size=3))}
    return text, other


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program=loop_programs())
def test_random_loops_over_lists_export_to_the_same_module(program, tmp_path_factory) -> None:
    text, other = program
    folder = tmp_path_factory.mktemp("loops")
    try:
        net, varied = archdsl.loads(text, path="loops.arch"), archdsl.loads(text, path="loops.arch", **other)
    except ArchError:
        assume(False)  # a list of no items where one is needed (min of []), say
    try:
        source = python_source(net)
    except BackendError:
        assume(False)  # an if whose arms give an image and a vector: refused, tested in test_export.py
    net_class = getattr(import_source(source, folder), network_class_name(net))
    assert_reproduces(net, net_class, folder)
    assert_reproduces(varied, net_class, folder, **other)
