"""archdsl check: every independent error of a file, its formats (text, JSON, GitHub annotations, SARIF), standard
input and folders."""

from __future__ import annotations

import json

from click.testing import CliRunner

from archdsl.check import check_source
from archdsl.cli import app
from archdsl.source import Source

BAD = "block a = < conv3x3 8\nblock b(c) = conv3x3 c; rleu\nnetwork n : [1, 8, 8] = b(8, 2); linear 10\n"


def check(*args: str, input: str | None = None):
    return CliRunner().invoke(app, ["check", *args], input=input)


def test_every_independent_error_is_reported_in_the_order_of_the_file():
    report = check_source(Source("x.arch", BAD))
    assert [(e.code, e.line, e.column) for e in report.errors] == [("A004", 2, 1), ("A101", 2, 25), ("A223", 3, 30)]


def test_text_json_github_and_sarif(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bad.arch").write_text(BAD)
    (tmp_path / "specs" / "good.arch").write_text("network n : [1, 8, 8] = relu\n")
    (tmp_path / "specs" / ".hidden").mkdir()
    (tmp_path / "specs" / ".hidden" / "x.arch").write_text("nonsense")
    result = check("specs")
    assert result.exit_code == 1
    assert result.stdout == "specs/good.arch: ok: n 1x8x8 -> 1x8x8\n"
    assert result.stderr.splitlines()[0] == "specs/bad.arch:2:1: error: unexpected 'block'; expected '>' [A004]"
    data = json.loads(check("specs", "--format", "json").stdout)
    assert data["errors"] == 3
    assert [(f["path"], f["ok"], f["networks"]) for f in data["files"]] == [
        ("specs/bad.arch", False, None), ("specs/good.arch", True, "n 1x8x8 -> 1x8x8")]
    assert data["files"][0]["diagnostics"][1] == {
        "code": "A101", "severity": "error", "message": "unknown layer or block 'rleu'", "hint": "did you mean 'relu'?",
        "file": "specs/bad.arch", "line": 2, "column": 25, "end_line": 2, "end_column": 29, "notes": []}
    github = check("specs", "--format", "github").stdout.splitlines()
    assert github[1] == ("::error file=specs/bad.arch,line=2,col=25,endLine=2,endColumn=29,title=A101 unknown layer or "
                         "block::unknown layer or block 'rleu'%0Ahint: did you mean 'relu'?")
    sarif = json.loads(check("specs", "--format", "sarif").stdout)
    assert (sarif["version"], sarif["$schema"]) == ("2.1.0", "https://json.schemastore.org/sarif-2.1.0.json")
    [run] = sarif["runs"]
    assert [rule["id"] for rule in run["tool"]["driver"]["rules"]] == ["A004", "A101", "A223"]
    assert run["tool"]["driver"]["rules"][1]["helpUri"].endswith("docs/errors.md#a101")
    assert run["results"][1] == {
        "ruleId": "A101", "ruleIndex": 1, "level": "error",
        "message": {"text": "unknown layer or block 'rleu'\nhint: did you mean 'relu'?"},
        "locations": [{"physicalLocation": {"artifactLocation": {"uri": "specs/bad.arch"},
                                            "region": {"startLine": 2, "startColumn": 25, "endLine": 2,
                                                       "endColumn": 29}}}]}


def test_an_error_in_a_block_instance_has_the_call_as_a_related_location(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "net.arch").write_text("block head = linear 10\nnetwork n : [1, 8, 8] = head\n")
    [result] = json.loads(check("net.arch", "--format", "sarif").stdout)["runs"][0]["results"]
    assert result["relatedLocations"] == [{
        "id": 0, "message": {"text": "head() instantiated here"},
        "physicalLocation": {"artifactLocation": {"uri": "net.arch"},
                             "region": {"startLine": 2, "startColumn": 25, "endLine": 2, "endColumn": 29}}}]


def test_standard_input_and_an_empty_folder(tmp_path):
    result = check("-", input="network n : [1, 8, 8] = rleu\n")
    assert (result.exit_code, result.stderr.splitlines()[0]) == (
        1, "<stdin>:1:25: error: unknown layer or block 'rleu' [A101]")
    assert check("-", input="network n : [1, 8, 8] = relu\n").stdout == "-: ok: n 1x8x8 -> 1x8x8\n"
    result = check(str(tmp_path))
    assert (result.exit_code, result.stderr) == (
        1, f"archdsl: error: {tmp_path} is a folder without .arch files [A700]\n"
           "  hint: name spec files or folders that hold them\n")
