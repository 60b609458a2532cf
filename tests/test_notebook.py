"""archdsl in Jupyter, run for real: notebooks executed by nbclient in an ipykernel, and the MIME bundles of their
cells asserted. A network displays as its depth-1 summary (table, totals, legend) beside its depth-1 diagram, and
as the table alone where Graphviz's dot is missing; ``net.summary()`` prints as ``archdsl compile`` and displays
as HTML; an ArchError shows its diagnostic, not a traceback; ``%load_ext archdsl`` brings the ``%%arch`` magic;
``archdsl.notebook.train`` updates a progress bar and the learning curves in place, and its result displays as
the metrics beside the curves."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import defaultdict
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
    "magic depth 0": RAISES + f"%%arch --depth 0\n{TINY}",
}


class RecordingClient(NotebookClient):
    """Also records every display message of each cell as it comes, updates included: an executed notebook keeps
    only each display's last state."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.displays: dict[int, list[tuple[str, str, dict]]] = defaultdict(list)

    def process_message(self, msg, cell, cell_index):
        if msg["msg_type"] in ("display_data", "update_display_data"):
            display_id = (msg["content"].get("transient") or {}).get("display_id")
            self.displays[cell_index].append((msg["msg_type"], display_id, msg["content"]["data"]))
        return super().process_message(msg, cell, cell_index)


def execute(cells: dict[str, str]) -> tuple[dict[str, list[dict]], dict[str, list]]:
    """Run the cells in a kernel started in the repository's root: each cell's outputs and display messages."""
    notebook = nbformat.v4.new_notebook()
    for source in cells.values():
        tags = ["raises-exception"] if source.startswith(RAISES) else []
        notebook.cells.append(nbformat.v4.new_code_cell(source.removeprefix(RAISES), metadata={"tags": tags}))
    client = RecordingClient(notebook, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(REPO)}})
    client.execute()
    nbformat.validate(notebook)
    return ({name: cell.outputs for name, cell in zip(cells, notebook.cells)},
            {name: client.displays[index] for index, name in enumerate(cells)})


@pytest.fixture(scope="module")
def outputs() -> dict[str, list[dict]]:
    return execute(CELLS)[0]


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
    (error,) = outputs["magic depth 0"]
    assert (error["ename"], error["traceback"]) == ("UsageError", [
        "archdsl: error: --depth must be at least 1, not 0", "  hint: leave it out for the network's display"])


DATA_ROOT = REPO.parent / "shared" / "datasets"
CNN = "network cnn : [1, 28, 28] -> [10] = conv3x3 8; relu; maxpool2; flatten; linear 10"
LINE = re.compile(r"epoch (\d)/2  train_loss \d\.\d{4}  train_acc \d\.\d{4}  test_loss \d\.\d{4}  test_acc \d\.\d{4}  "
                  r"[\d,]+ ex/s  \d+\.\d s  lr 0\.1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A two-epoch run on 640 Fashion-MNIST images from a notebook: the outputs, the display messages and the run
    folder."""
    pytest.importorskip("torch", reason="training needs the train extra")
    if not (DATA_ROOT / "fashion-mnist").is_dir():
        pytest.skip(f"needs the Fashion-MNIST files in {DATA_ROOT / 'fashion-mnist'}")
    out = tmp_path_factory.mktemp("notebook") / "run"
    cells = {
        "train": (f"import archdsl\nfrom archdsl.notebook import train\ncnn = archdsl.loads({CNN!r})\n"
                  f"result = train(cnn, epochs=2, batch_size=64, lr=0.1, data_dir={str(DATA_ROOT)!r}, limit=640, "
                  f"threads=1, out={str(out)!r})"),
        "result": "result",
        "lines": "print('\\n'.join(row.line(2) for row in result.history))",
    }
    outputs, displays = execute(cells)
    return outputs, displays, out


def test_training_shows_a_live_bar_and_curves_redrawn_each_epoch(trained):
    outputs, displays, out = trained
    messages = displays["train"]
    bar_id, curves_id = messages[0][1], messages[next(i for i, m in enumerate(messages) if m[1] != messages[0][1])][1]
    # The bar's updates within an epoch come every half second, as many as the machine's speed makes: the rest
    # of the sequence is exact.
    running = re.compile(r"epoch \d/2  step \d+/10  loss \d\.\d{4}  acc \d\.\d{4}  [\d,]+ ex/s")
    steady, curves = [], []
    for kind, display_id, data in messages:
        if display_id == bar_id and running.fullmatch(data["text/plain"]):
            continue
        steady.append((kind, "bar" if display_id == bar_id else "curves", data["text/plain"]))
        if display_id == curves_id:
            curves.append(data["image/svg+xml"])
    epochs = outputs["lines"][0]["text"].splitlines()
    assert steady == [
        ("display_data", "bar", "epoch 1/2"),
        ("update_display_data", "bar", "epoch 1/2  step 0/10"),
        ("update_display_data", "bar", epochs[0]),
        ("display_data", "curves", "learning curves of cnn on fashion-mnist, 1 epoch"),
        ("update_display_data", "bar", "epoch 2/2  step 0/10"),
        ("update_display_data", "bar", epochs[1]),
        ("update_display_data", "curves", "learning curves of cnn on fashion-mnist, 2 epochs"),
    ]
    assert [LINE.fullmatch(line).group(1) for line in epochs] == ["1", "2"]
    assert '<progress value="1.0000" max="1"' in messages[-2][2]["text/html"]  # the bar's last state: full
    # The runner's figure (8 x 3.2 inches), drawn again with the second epoch's points.
    assert all(svg.startswith("<svg") and 'width="576pt" height="230.4pt"' in svg for svg in curves)
    assert curves[0] != curves[1]
    # The notebook keeps the last state of each display, and what the run printed.
    bar, last_curves = (output for output in outputs["train"] if output["output_type"] == "display_data")
    assert (bar["data"]["text/plain"], last_curves["data"]["image/svg+xml"]) == (epochs[1], curves[1])
    printed = "".join(output["text"] for output in outputs["train"] if output["output_type"] == "stream")
    assert printed.splitlines()[0].startswith("cnn on fashion-mnist (640 training and 640 test images): cpu, 1 thread")
    assert printed.splitlines()[-1].endswith(f"run folder {out}")


def test_the_training_result_displays_its_metrics_beside_its_curves(trained):
    outputs, _, out = trained
    (result,) = outputs["result"]
    assert set(result["data"]) == {"text/plain", "text/html"}
    with open(out / "metrics.csv", newline="") as metrics:
        rows = list(csv.DictReader(metrics))
    html = Tables(result["data"]["text/html"])
    assert html.rows[0] == ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "ex/s", "seconds", "lr"]
    text = result["data"]["text/plain"].splitlines()
    assert text[0] == f"cnn on fashion-mnist; run folder {out}"
    assert text[2].split() == html.rows[0]
    for shown in (html.rows[1:], [line.split() for line in text[4:]]):
        assert len(shown) == len(rows) == 2
        for cells, row in zip(shown, rows):
            # What the run computed, exactly as metrics.csv holds it; its timings, which metrics.csv rounds to
            # three decimals, to their last digit shown.
            assert cells[:5] + cells[7:] == [
                row["epoch"], f"{float(row['train_loss']):.4f}", f"{float(row['train_acc']):.4f}",
                f"{float(row['test_loss']):.4f}", f"{float(row['test_acc']):.4f}", f"{float(row['lr']):.4g}"]
            assert re.fullmatch(r"[\d,]+", cells[5]) and re.fullmatch(r"\d+\.\d", cells[6])
            assert abs(float(cells[5].replace(",", "")) - float(row["examples_per_s"])) <= 0.5 + 1e-3
            assert abs(float(cells[6]) - float(row["seconds"])) <= 0.05 + 1e-3
    assert "<svg" in result["data"]["text/html"]


def test_training_without_the_train_extra_names_it():
    from test_packaging import without_extras

    done = without_extras("-c", "import archdsl.notebook; archdsl.notebook.load_ipython_extension\n"
                                "from archdsl.notebook import train")
    assert done.returncode == 1
    message, hint = done.stderr.splitlines()[-2:]
    assert re.fullmatch(r"archdsl\.errors\.UsageError: archdsl: error: \w+ is not installed; it comes with "
                        r"archdsl's 'train' extra", message), message
    assert hint.startswith("  hint: pip install 'archdsl[train]'")
