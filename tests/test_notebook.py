"""archdsl in Jupyter, run for real: a notebook executed by nbclient in an ipykernel, and the MIME bundles of its
cells asserted. A network displays as its depth-1 summary (table, totals, legend) beside its depth-1 diagram, and
as the table alone where Graphviz's dot is missing; ``net.summary()`` prints as ``archdsl compile`` and displays
as HTML; an ArchError shows its diagnostic, not a traceback; ``%load_ext archdsl`` brings the ``%%arch`` magic."""

from __future__ import annotations

import subprocess
import sys
from html.parser import HTMLParser

import pytest
from conftest import REPO

pytest.importorskip("nbclient", reason="needs nbclient and ipykernel (the test extra)")
pytest.importorskip("ipykernel", reason="needs nbclient and ipykernel (the test extra)")
import nbformat
from nbclient import NotebookClient

SMALLVGG = "specs/examples/smallvgg.arch"
# smallvgg's depth-1 table, written out: block calls as one row each with their sums.
SMALLVGG_ROWS = [
    ["layer", "kind", "output", "params", "MACs"],
    ["vgg_0", "vgg(1, 16)", "16x14x14", "160", "112,896"],
    ["vgg_1", "vgg(2, 32)", "32x7x7", "13,888", "2,709,504"],
    ["flatten_0", "flatten", "1568", "0", "0"],
    ["linear_0", "linear(out=128)", "128", "200,832", "200,704"],
    ["relu_0", "relu", "128", "0", "0"],
    ["dropout_0", "dropout", "128", "0", "0"],
    ["linear_1", "linear(out=10)", "10", "1,290", "1,280"],
]
SMALLVGG_TOTALS = ("output 10 · params 216,170 · MACs 3,024,384\n"
                   "parameter memory 844.41 KiB · activation memory 222.04 KiB per sample")
TINY = "network tiny(classes = 10) : [1, 8, 8] -> [classes] =\n    conv3x3 4; relu; maxpool2; flatten; linear classes"
RAISES = "# raises\n"  # a cell expected to fail: tagged raises-exception, so that the notebook runs on

CELLS = {
    "display": f'import archdsl\nnet = archdsl.load("{SMALLVGG}")\nnet',
    "print": "print(net.summary())",
    "summary": "net.summary(depth=1)",
    "no dot": ('import os\nfrom IPython.display import display\n'
               'path, os.environ["PATH"] = os.environ["PATH"], ""\ndisplay(net)\nos.environ["PATH"] = path'),
    "error": RAISES + 'archdsl.loads("network n : [1, 8, 8] = conv3x 4")',
    "load_ext": "%load_ext archdsl",
    "magic": f"%%arch -p classes=5\n{TINY}",
    "bound": "tiny.params, tiny.output_shape, type(tiny).__name__",
    "magic graph": f"%%arch small --depth 2 --graph\n{TINY}",
    "bound by name": "small.params",
    "magic error": RAISES + "%%arch\nnetwork bad : [1, 8, 8] =\n    conv3x3 4; relu 3",
}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, list[dict]]:
    """Each cell's outputs, from one run of the notebook in a kernel started in the repository's root."""
    notebook = nbformat.v4.new_notebook()
    for source in CELLS.values():
        tags = ["raises-exception"] if source.startswith(RAISES) else []
        notebook.cells.append(nbformat.v4.new_code_cell(source.removeprefix(RAISES), metadata={"tags": tags}))
    NotebookClient(notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}}).execute()
    nbformat.validate(notebook)
    return {name: cell.outputs for name, cell in zip(CELLS, notebook.cells)}


class Tables(HTMLParser):
    """The cells of each HTML table row (header and body), and whether the fragment holds an <svg>."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.svg_titles: list[str] = []
        self.paragraphs: list[str] = []
        self._text: list[str] | None = None
        self._tag = ""
        self.feed(html)

    def handle_starttag(self, tag, attrs) -> None:
        self._tag = tag
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th", "title", "p"):
            self._text = []
        elif tag == "br" and self._text is not None:
            self._text.append("\n")

    def handle_endtag(self, tag) -> None:
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self._text))
        elif tag == "title":
            self.svg_titles.append("".join(self._text))
        elif tag == "p":
            self.paragraphs.append("".join(self._text))
        if tag in ("td", "th", "title", "p"):
            self._text = None

    def handle_data(self, data) -> None:
        if self._text is not None:
            self._text.append(data)


def compile_output(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "archdsl", "compile", *args], cwd=REPO, capture_output=True,
                          text=True, check=True).stdout


def test_a_network_displays_as_its_summary_beside_its_diagram(outputs):
    (output,) = outputs["display"]
    assert output["output_type"] == "execute_result"
    assert set(output["data"]) == {"text/plain", "text/html"}
    assert output["data"]["text/plain"] + "\n" == compile_output(SMALLVGG, "--depth", "1")
    html = Tables(output["data"]["text/html"])
    assert html.rows == SMALLVGG_ROWS
    assert html.paragraphs[0] == SMALLVGG_TOTALS
    assert html.paragraphs[1].startswith("MACs: multiply-accumulates of convolution and linear weights")
    # The depth-1 diagram: a node per block call, named by its path, each followed by its edge in (the ReLU is
    # folded into linear_0's node).
    assert html.svg_titles == ["smallvgg", "input", "vgg_0", "input->vgg_0", "vgg_1", "vgg_0->vgg_1", "flatten_0",
                               "vgg_1->flatten_0", "linear_0", "flatten_0->linear_0", "dropout_0",
                               "linear_0->dropout_0", "linear_1", "dropout_0->linear_1", "output", "linear_1->output"]


def test_the_summary_prints_as_compile_and_displays_as_a_table(outputs):
    (printed,) = outputs["print"]
    assert (printed["output_type"], printed["name"]) == ("stream", "stdout")
    assert printed["text"] == compile_output(SMALLVGG) + "\n"
    (shown,) = outputs["summary"]
    assert set(shown["data"]) == {"text/plain", "text/html"}
    assert shown["data"]["text/plain"] + "\n" == compile_output(SMALLVGG, "--depth", "1")
    html = Tables(shown["data"]["text/html"])
    assert (html.rows, html.paragraphs[0], html.svg_titles) == (SMALLVGG_ROWS, SMALLVGG_TOTALS, [])


def test_without_dot_the_display_is_the_table_alone(outputs):
    (output,) = outputs["no dot"]  # no stream: nothing written to stderr either
    assert output["output_type"] == "display_data"
    html = Tables(output["data"]["text/html"])
    assert (html.rows, html.paragraphs[0], html.svg_titles) == (SMALLVGG_ROWS, SMALLVGG_TOTALS, [])


def test_an_arch_error_shows_its_diagnostic_not_a_traceback(outputs):
    (error,) = outputs["error"]
    assert (error["output_type"], error["ename"]) == ("error", "ResolveError")
    assert error["traceback"] == [
        "<string>:1:25: error: unknown layer or block 'conv3x'",
        "    1 | network n : [1, 8, 8] = conv3x 4",
        "      |                         ^^^^^^",
        "  hint: did you mean 'conv3x3'?",
    ]


def test_the_arch_magic_checks_displays_and_binds_the_network(outputs):
    assert outputs["load_ext"] == []
    (shown,) = outputs["magic"]
    assert shown["output_type"] == "display_data"
    assert Tables(shown["data"]["text/html"]).rows == [
        ["layer", "kind", "output", "params", "MACs"],
        ["conv_0", "conv3x3(out=4)", "4x8x8", "40", "2,304"],
        ["relu_0", "relu", "4x8x8", "0", "0"],
        ["maxpool_0", "maxpool2", "4x4x4", "0", "0"],
        ["flatten_0", "flatten", "64", "0", "0"],
        ["linear_0", "linear(out=5)", "5", "325", "320"],
    ]
    (bound,) = outputs["bound"]
    assert bound["data"] == {"text/plain": "(365, (5,), 'CompiledNetwork')"}


def test_the_arch_magic_takes_a_name_a_depth_and_draws_the_graph(outputs, tmp_path):
    (tmp_path / "tiny.arch").write_text(TINY)
    summary, graph = outputs["magic graph"]
    assert summary["data"]["text/plain"] + "\n" == compile_output(str(tmp_path / "tiny.arch"), "--depth", "2")
    assert set(graph["data"]) == {"text/plain", "image/svg+xml"}
    assert graph["data"]["image/svg+xml"].startswith("<svg")
    assert "<title>conv_0</title>" in graph["data"]["image/svg+xml"]
    assert outputs["bound by name"][0]["data"] == {"text/plain": "690"}


def test_a_mistake_in_an_arch_cell_is_its_diagnostic(outputs):
    (error,) = outputs["magic error"]
    assert (error["output_type"], error["ename"]) == ("error", "ResolveError")
    assert error["traceback"][0].startswith("<cell>:2:21: error: relu takes ")
    assert error["traceback"][1:3] == ["    2 |     conv3x3 4; relu 3", "      |                     ^"]
