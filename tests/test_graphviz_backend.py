"""The Graphviz backend: every spec drawn to SVG and read back as XML, against its resolved IR.

The oracle is the IR itself (layers, blocks, joins and their shapes), read independently of the
drawing code; the SVG is what ``dot`` made of the diagram, so the checks hold for the real picture:
which nodes, clusters and edge labels it has, and where dot put the branches.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import graphviz
import pytest
from conftest import CASES, REPO, SPECS
from click.testing import CliRunner

import archdsl
from archdsl import ir
from archdsl.cli import app
from archdsl.errors import BackendError, UsageError
from archdsl.graphviz_backend import FAMILY_COLOURS, inline_svg, render, save
from archdsl.layers import REGISTRY
from archdsl.resolve import Limits

SVG = "{http://www.w3.org/2000/svg}"
XLINK_TITLE = "{http://www.w3.org/1999/xlink}title"
ALL_SPECS = sorted(SPECS.glob("*.arch"))
# Rendering needs Graphviz's dot (scripts/setup.sh installs it); the DOT text and the errors do not.
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


@dataclass
class Picture:
    """What an SVG from dot holds: nodes (text lines, tooltip, centre), clusters (label), edges (label)."""

    nodes: dict[str, tuple[list[str], str, tuple[float, float] | None]]
    clusters: dict[str, str]
    edges: list[tuple[str, str, str, str]]  # tail, head, label text, tooltip

    def into(self, head: str) -> list[tuple[str, str, str, str]]:
        return [edge for edge in self.edges if edge[1] == head]

    def out_of(self, tail: str) -> list[tuple[str, str, str, str]]:
        return [edge for edge in self.edges if edge[0] == tail]


def picture(svg: bytes) -> Picture:
    nodes, clusters, edges = {}, {}, []
    for group in ET.fromstring(svg).iter(f"{SVG}g"):
        kind = group.get("class")
        if kind not in ("node", "cluster", "edge"):
            continue
        title = group.find(f"{SVG}title").text
        texts = [t.text or "" for t in group.iter(f"{SVG}text")]
        tooltip = "\n".join(a.get(XLINK_TITLE, "") for a in group.iter(f"{SVG}a"))
        if kind == "node":
            first = next(group.iter(f"{SVG}text"), None)
            centre = (float(first.get("x")), float(first.get("y"))) if first is not None else None
            nodes[title] = (texts, tooltip, centre)
        elif kind == "cluster":
            clusters[title] = " ".join(texts)
        else:
            tail, head = title.split("->")
            edges.append((tail, head, " ".join(texts), tooltip))
    return Picture(nodes, clusters, edges)


def draw_svg(net: archdsl.CompiledNetwork, **options) -> Picture:
    return picture(render(net.graph(**options), "svg"))


def shape(dims: ir.Shape) -> str:
    """How an edge shows a shape: 64×56×56, 197×768, and (56×56)×96 for tokens on a grid."""
    if isinstance(dims, ir.Tokens) and dims.grid is not None:
        return f"({dims[0]}×{dims[1]})×{dims[2]}"
    return "×".join(map(str, dims))


@pytest.fixture(scope="module")
def specs():
    """Every spec in specs/, compiled once at its defaults, named relative to the repository."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        return {path.stem: archdsl.load(path.relative_to(REPO)) for path in ALL_SPECS}
    finally:
        os.chdir(cwd)


def nodes_of(net, cls):
    return [node for node in ir.walk(net.ir.body) if isinstance(node, cls)]


# -- every spec, full depth ----------------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("name", [path.stem for path in ALL_SPECS])
def test_every_layer_block_and_shape_is_drawn(specs, name):
    net = specs[name]
    pic = draw_svg(net, fold_activations=False)
    layers = list(net.layers())
    shortcuts = [layer for layer in layers if layer.kind == "id"]
    drawn = [layer for layer in layers if layer.kind != "id"]
    joins = nodes_of(net, ir.Join)
    blocks = nodes_of(net, ir.Block)

    # One node per layer (identities are edges), plus input, output, each join and its fork point.
    assert len(pic.nodes) == len(drawn) + 2 + 2 * len(joins)
    for layer in drawn:
        texts, tooltip, _ = pic.nodes[layer.path]
        assert tooltip == f"{layer.path} ({layer.span})"
        assert texts == [REGISTRY[layer.kind].label(layer.args)]
    for layer in shortcuts:
        assert sum(layer.path in edge[3] for edge in pic.edges) == 1

    # One cluster per block call, labelled with the call.
    assert pic.clusters == {f"cluster_{block.path}": block.call for block in blocks}

    # Every edge carries the shape its tail produces; the edges out of a fork point carry none
    # (the edge into the fork does).
    produced = {node.path: node.out_shape for node in ir.walk(net.ir.body)}
    produced["input"] = net.input_shape
    forks = {f"{join.path}.in" for join in joins}
    for tail, head, label, _ in pic.edges:
        if tail in forks:
            assert label == ""
        else:
            assert label == shape(produced[tail]), (tail, head)
    assert pic.into("output")[0][2] == shape(net.output_shape)


@needs_dot
@pytest.mark.parametrize("name", ["googlenet", "resnet18", "densenet"])
def test_branches_fan_out_and_meet_at_a_join(specs, name):
    net = specs[name]
    pic = draw_svg(net)
    joins = nodes_of(net, ir.Join)
    assert joins
    for join in joins:
        texts, _, _ = pic.nodes[join.path]
        assert texts == (["concat"] if join.op == "concat" else ["+"])
        assert len(pic.into(join.path)) == len(join.branches)
        assert len(pic.out_of(f"{join.path}.in")) == len(join.branches)
        assert len(pic.into(f"{join.path}.in")) == 1


@needs_dot
def test_inception_paths_side_by_side(specs):
    net = specs["googlenet"]
    pic = draw_svg(net)
    for join in nodes_of(net, ir.Join):
        heads = [edge[1] for edge in pic.out_of(f"{join.path}.in")]
        # Heads in branch order: the branch index is in each head's path.
        assert [head.split(".")[-2] for head in heads] == ["b0", "b1", "b2", "b3"]
        centres = [pic.nodes[head][2] for head in heads]
        xs, ys = [c[0] for c in centres], [c[1] for c in centres]
        assert len(set(ys)) == 1, f"{join.path}: branch heads on different ranks"
        assert xs == sorted(xs) and len(set(xs)) == 4, f"{join.path}: branches not side by side in order"


@needs_dot
def test_residual_shortcut_is_an_identity_edge_inside_its_block(specs):
    net = specs["resnet18"]
    pic = draw_svg(net)
    identity = [join for join in nodes_of(net, ir.Join) if join.branches[1][0].kind == "id"]
    strided = [join for join in nodes_of(net, ir.Join) if join.branches[1][0].kind == "conv"]
    assert len(identity) == 5 and len(strided) == 3  # ResNet-18: three stages start with a 1×1 projection
    for join in identity:
        [shortcut] = [edge for edge in pic.into(join.path) if edge[0] == f"{join.path}.in"]
        assert shortcut[3] == f"{join.branches[1][0].path} (identity)"
    for join in strided:
        projection = join.branches[1][0]
        assert pic.nodes[projection.path][0] == [f"conv 1×1, {projection.args['out']}, /2"]


@needs_dot
def test_activations_fold_into_the_layer_before_them(specs):
    pic = draw_svg(specs["resnet18"])
    assert pic.nodes["stem_0.conv_0"][0] == ["conv 7×7, 64, /2"]
    assert pic.nodes["stem_0.bn_0"][0] == ["BN + ReLU"]
    assert "stem_0.relu_0" in pic.nodes["stem_0.bn_0"][1]
    assert "stem_0.relu_0" not in pic.nodes
    # After an add, the ReLU has no layer of its own block to fold into: it stays a node.
    assert pic.nodes["stage_0.residual_0.relu_0"][0] == ["ReLU"]


# -- depth ---------------------------------------------------------------------------------------


@needs_dot
@pytest.mark.parametrize("name", ["googlenet", "resnet18", "densenet", "vgg16"])
def test_depth_one_draws_each_top_level_call_as_one_node(specs, name):
    net = specs[name]
    full = draw_svg(net)
    pic = draw_svg(net, depth=1)
    top_blocks = [node for node in net.ir.body if isinstance(node, ir.Block)]
    assert len(pic.nodes) < len(full.nodes)
    assert pic.clusters == {}
    for block in top_blocks:
        texts, _, _ = pic.nodes[block.path]
        assert texts == [block.call, f"{shape(block.in_shape)} → {shape(block.out_shape)}, {block.params:,} params"]
    top_layers = [node for node in net.ir.body if isinstance(node, ir.Layer) and node.kind != "id"]
    assert set(pic.nodes) <= {node.path for node in top_blocks + top_layers} | {"input", "output"}


@needs_dot
def test_depth_two_opens_stages_and_closes_residual_blocks(specs):
    # The first stage's two residual blocks alike are one node ×2; the others begin with a strided block.
    net = specs["resnet18"]
    pic = draw_svg(net, depth=2)
    stages = [node for node in net.ir.body if isinstance(node, ir.Block)][1:]
    assert set(pic.clusters) == {f"cluster_{node.path}" for node in net.ir.body if isinstance(node, ir.Block)}
    first, second = stages[0].body
    assert pic.nodes[first.path][0] == ["residual(64, 1) ×2", f"64×24×24 → 64×24×24, {2 * first.params:,} params"]
    assert second.path not in pic.nodes
    assert pic.nodes[first.path][1] == (f"residual(64, 1): {first.path} ({first.span})\n"
                                        f"residual(64, 1): {second.path} ({second.span})")
    for stage in stages[1:]:
        for residual in stage.body:
            assert pic.nodes[residual.path][0][0] == residual.call


@needs_dot
def test_a_transformers_blocks_are_one_node_and_its_sole_call_is_drawn_open() -> None:
    # vit_b_16's body is one call, vit(...): at depth 1 it is drawn open, and its twelve encoder blocks alike are
    # one node with their total; a Swin stage's blocks differ in their shifts and rates: one node by the block's name.
    pic = draw_svg(archdsl.load("vit_b_16"), depth=1)
    assert pic.clusters == {"cluster_vit_0": "vit(16, 12, 12, 768, 3072, 224, 1000)"}
    assert pic.nodes["vit_0.encoder_0"][0] == ["encoder(12, 3072, 1e-06) ×12", "197×768 → 197×768, 85,054,464 params"]
    assert [edge[2] for edge in pic.into("vit_0.encoder_0")] == ["197×768"]
    assert [pic.nodes[name][0][0] for name in ("vit_0.tokens_0", "vit_0.clstoken_0", "vit_0.posembed_0")] == [
        "tokens", "class token", "position embedding 197"]
    assert [edge[2] for edge in pic.into("vit_0.clstoken_0")] == ["(14×14)×768"]
    swin = draw_svg(archdsl.load("swin_t"), depth=2)
    assert swin.nodes["swin_0.stage_2.swin_block_0"][0] == [
        "swin_block ×6", "(14×14)×384 → (14×14)×384, 10,658,952 params"]
    assert swin.nodes["swin_0.stage_2.swin_block_0"][1].splitlines()[1].startswith(
        "swin_block(12, 3, 0.0909091, 7): swin_0.stage_2.swin_block_1 (")


# -- the registry × this backend -----------------------------------------------------------------

EVERY_KIND = """
network every : [3, 16, 16] =
    conv 8 k=3 p=1; bn; relu; lrn; maxpool2; avgpool k=2 s=1; adaptiveavgpool 4;
    sigmoid; tanh; gelu; leakyrelu slope=0.2; id; conv1x7 8 s=2; ln; gn 2; shuffle 4; concat [ chunk 2 0 | slice 4 8 ];
    scale; droppath 0.1;
    relu6; silu; hardswish; hardsigmoid; elu; selu; mish; maxpool 3 s=2 ceil=true; adaptivemaxpool 2;
    tokens; windowattention heads=2 window=1; windowattention2 heads=2 window=2 shift=1;
    partitionattention heads=2 partition=2 grid=true; patchmerge; untokens; tokens;
    clstoken; posembed 2;
    attention heads=2; concat [ token 0 | tokenmean ];
    flatten; dropout 0.1; linear 10; softmax
"""


@needs_dot
def test_every_registered_kind_has_a_colour_and_a_label():
    net = archdsl.loads(EVERY_KIND)
    assert {layer.kind for layer in net.layers()} == set(REGISTRY), "add new kinds to EVERY_KIND"
    assert {kind.family for kind in REGISTRY.values()} <= set(FAMILY_COLOURS)
    pic = draw_svg(net, fold_activations=False)
    labels = [pic.nodes[layer.path][0][0] for layer in net.layers() if layer.kind != "id"]
    assert labels == [
        "conv 3×3, 8", "BN", "ReLU", "LRN 5", "maxpool 2×2, /2", "avgpool 2×2", "adaptive avgpool 4×4",
        "Sigmoid", "Tanh", "GELU", "LeakyReLU 0.2", "conv 1×7, 8, /2", "LN", "GN 2", "shuffle 4", "chunk 0 of 2",
        "channels 4:8", "scale 1e-06",
        "droppath 0.1", "ReLU6", "SiLU", "Hardswish", "Hardsigmoid", "ELU", "SELU", "Mish", "maxpool 3×3, /2, ceil",
        "adaptive maxpool 2×2", "tokens", "window attention 1×1, 2 heads",
        "cosine window attention 2×2, 2 heads, shift 1", "grid attention 2×2, 2 heads", "patch merge 2×2", "untokens", "tokens",
        "class token", "position embedding 2", "attention, 2 heads", "token 0", "mean of tokens",
        "flatten", "dropout 0.1", "linear 10", "Softmax",
    ]


# -- golden DOT ----------------------------------------------------------------------------------

BRANCHES = """
block unit(c) = conv3x3 c; relu; conv1x1 c
block mixed(c) = add [ unit(c); bn | id ]; concat [ conv1x1 c | maxpool k=3 s=1 p=1 ]
network branches : [4, 8, 8] = mixed(4); gap; flatten; linear 3
"""


def test_lenet_dot_golden(in_repo, golden):
    golden(CASES / "graph" / "lenet.dot", archdsl.load("specs/lenet.arch").graph().source)


def test_branches_dot_golden(golden):
    graph = archdsl.loads(BRANCHES, path="branches.arch").graph(direction="LR")
    golden(CASES / "graph" / "branches.dot", graph.source)


# -- deep and long networks ----------------------------------------------------------------------


@needs_dot
def test_deep_nesting_draws_without_recursion():
    levels = Limits().max_depth - 4  # as deep as the resolver allows, with room for the network's own levels
    margin = 40  # frames the drawing may use on top of this test's: fewer than the blocks nested
    assert levels > margin
    text = "block b0 = relu\n" + "".join(f"block b{i} = b{i - 1}\n" for i in range(1, levels))
    net = archdsl.loads(text + f"network deep : [2] = b{levels - 1}")
    frames, frame = 0, sys._getframe()
    while frame is not None:
        frames, frame = frames + 1, frame.f_back
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(frames + margin)
    try:
        graph = net.graph()
    finally:
        sys.setrecursionlimit(limit)
    assert graph.source.count("subgraph ") == levels
    pic = picture(render(graph, "svg"))
    innermost = ".".join(f"b{i}_0" for i in reversed(range(levels))) + ".relu_0"
    assert len(pic.clusters) == levels and set(pic.nodes) == {"input", innermost, "output"}


def test_long_sequence():
    net = archdsl.loads("network long : [8] = repeat 1000 <linear 8; relu>")
    graph = net.graph()
    assert graph.source.count(" + ReLU") == 1000


# -- files, options and errors -------------------------------------------------------------------


@needs_dot
def test_save_writes_each_format(tmp_path, specs):
    graph = specs["lenet"].graph()
    for suffix, magic in ((".svg", b"<?xml"), (".png", b"\x89PNG"), (".pdf", b"%PDF"), (".dot", b"digraph")):
        save(graph, tmp_path / f"lenet{suffix}")
        assert (tmp_path / f"lenet{suffix}").read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet.dot", "lenet.pdf", "lenet.png", "lenet.svg"]


def test_unknown_suffix_is_a_clear_error(tmp_path, specs):
    with pytest.raises(UsageError) as err:
        save(specs["lenet"].graph(), tmp_path / "lenet.jpeg")
    assert err.value.render() == (
        "archdsl: error: cannot tell which format to write from the name 'lenet.jpeg'\n"
        "  hint: end it with .svg, .png, .pdf or .dot, or pass --format"
    )


def test_a_diagram_never_replaces_a_folder_or_the_spec(tmp_path):
    spec = tmp_path / "n.arch"
    spec.write_text("network n : [1, 4, 4] = flatten; linear 2\n", encoding="utf-8")
    graph = archdsl.load(spec).graph()
    with pytest.raises(UsageError, match=f"cannot write {tmp_path}: it is a folder"):
        save(graph, tmp_path)
    with pytest.raises(UsageError, match="cannot write .*x.svg: no folder"):
        save(graph, tmp_path / "missing" / "x.svg")
    result = CliRunner().invoke(app, ["graph", str(spec), "-o", str(spec)])
    assert result.exit_code == 1 and "refusing to write" in result.output
    assert spec.read_text(encoding="utf-8") == "network n : [1, 4, 4] = flatten; linear 2\n"


def test_bad_options(specs):
    with pytest.raises(UsageError, match="--direction takes TB .* not 'up'"):
        specs["lenet"].graph(direction="up")
    with pytest.raises(UsageError, match="--depth must be at least 1, not 0"):
        specs["lenet"].graph(depth=0)
    assert "rankdir=LR" in specs["lenet"].graph(direction="lr").source


def test_missing_dot_fails_clearly_and_keeps_the_old_file(tmp_path, monkeypatch, specs):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    old = tmp_path / "lenet.png"
    old.write_bytes(b"old picture")
    with pytest.raises(BackendError) as err:
        save(specs["lenet"].graph(), old)
    assert err.value.render() == (
        "archdsl: error: cannot draw the PNG: Graphviz's 'dot' program is not installed (or not on PATH)\n"
        "  hint: install Graphviz (apt-get install graphviz on Debian/Ubuntu, brew install graphviz on macOS), "
        "or write a .dot file, which needs no Graphviz"
    )
    assert old.read_bytes() == b"old picture"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
    save(specs["lenet"].graph(), tmp_path / "lenet.dot")  # DOT needs no Graphviz
    assert (tmp_path / "lenet.dot").read_text().startswith("digraph lenet {")


def test_cli_without_dot_on_path(tmp_path):
    """The real command in a fresh process whose PATH has no dot: one message, no traceback."""
    env = {**os.environ, "PATH": str(tmp_path)}
    spec = str(SPECS / "lenet.arch")
    command = [sys.executable, "-m", "archdsl.cli", "graph", spec]
    png = subprocess.run([*command, "-o", str(tmp_path / "l.png")], check=False, env=env, capture_output=True,
                         text=True)
    assert png.returncode == 1
    assert png.stderr.startswith("archdsl: error: cannot draw the PNG: Graphviz's 'dot' program is not installed")
    assert "apt-get install graphviz" in png.stderr and "Traceback" not in png.stderr
    assert not (tmp_path / "l.png").exists()
    dot = subprocess.run([*command, "-o", str(tmp_path / "l.dot")], check=False, env=env, capture_output=True,
                         text=True)
    assert (dot.returncode, dot.stdout, dot.stderr) == (0, f"wrote {tmp_path / 'l.dot'}\n", "")


def test_cli_reports_spec_errors_as_compile_does(tmp_path):
    bad = tmp_path / "bad.arch"
    bad.write_text("network n : [1, 8, 8] =\n    conv3x 4; relu\n")
    runner = CliRunner()
    graphed = runner.invoke(app, ["graph", str(bad), "-o", str(tmp_path / "bad.svg")])
    compiled = runner.invoke(app, ["compile", str(bad)])
    assert graphed.exit_code == compiled.exit_code == 1
    assert graphed.stderr == compiled.stderr
    assert graphed.stderr == (
        f"{bad}:2:5: error: unknown layer or block 'conv3x' [A101]\n"
        "    2 |     conv3x 4; relu\n"
        "      |     ^^^^^^\n"
        "  hint: did you mean 'conv3x3'?\n"
    )
    assert not (tmp_path / "bad.svg").exists()


@needs_dot
def test_cli_options(tmp_path):
    out = tmp_path / "g.svg"
    result = CliRunner().invoke(app, [
        "graph", str(SPECS / "googlenet.arch"), "-o", str(out), "--depth", "1", "--direction", "LR",
        "--separate-activations", "--param", "classes=7", "--param", "in_channels=3", "--input", "3x64x64",
    ])
    assert (result.exit_code, result.stdout) == (0, f"wrote {out}\n")
    pic = picture(out.read_bytes())
    assert pic.into("output")[0][2] == "7"
    assert pic.out_of("input")[0][2] == "3×64×64"
    assert pic.nodes["relu_0"][0] == ["ReLU"] and len(pic.clusters) == 0
    unknown = CliRunner().invoke(app, ["graph", str(SPECS / "lenet.arch"), "-o", str(tmp_path / "g.gif")])
    assert unknown.exit_code == 1 and "cannot tell which format" in unknown.stderr


@needs_dot
def test_default_output_is_the_network_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["graph", str(SPECS / "lenet.arch")])
    assert (result.exit_code, result.stdout) == (0, "wrote lenet.svg\n")
    assert (tmp_path / "lenet.svg").read_bytes().startswith(b"<?xml")


@needs_dot
def test_inline_svg_is_the_diagram_to_place_in_html(specs):
    """What a notebook shows beside the summary (tests/test_notebook.py): the <svg> element, without the XML
    prolog and doctype that cannot stand inside HTML."""
    net = specs["lenet"]
    assert isinstance(net.graph(), graphviz.Digraph)
    svg = inline_svg(net.graph())
    assert svg.startswith("<svg") and svg.endswith("</svg>\n")
    assert picture(svg.encode()).nodes.keys() == draw_svg(net).nodes.keys()


def test_inline_svg_without_dot_is_none(specs, monkeypatch):
    monkeypatch.setenv("PATH", "")
    assert inline_svg(specs["lenet"].graph()) is None


def test_draw_takes_the_ir_without_torch():
    code = ("import sys, archdsl; from archdsl.graphviz_backend import draw; "
            "draw(archdsl.load(sys.argv[1]).ir).source; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code, str(SPECS / "googlenet.arch")],
                            capture_output=True, text=True, check=True)
    assert result.stdout == "False\n"


def test_symbolic_sizes_on_edges_keep_their_parentheses() -> None:
    """Edge labels are written by the one shape formatter the summary uses: 96×floor((H + 3) / 4) - 2×...
    meant something else."""
    from archdsl.shapes import show

    from archdsl import ir
    from archdsl.symbolic import Sym

    net = archdsl.load(SPECS / "alexnet.arch", input_shape=(1, Sym.symbol("H"), Sym.symbol("W")))
    source = net.graph().source
    first = next(node for node in ir.walk(net.ir.body) if getattr(node, "kind", None) == "conv")
    assert show(first.out_shape) == "96×(floor((H + 3) / 4) - 2)×(floor((W + 3) / 4) - 2)"
    assert f'label="{show(first.out_shape)}"' in source
    assert "×floor(" not in source
