"""Error codes: every example of docs/errors.md does what it says, every golden mistake has its own code, and the
docs are the table's (archdsl/codes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO

import archdsl
from archdsl.cli import app
from archdsl.codes import BY_CODE, CODES, Example, code_of, explain, markdown
from archdsl.errors import ArchError, ParseError, ResolveError

CHECKED = [c for c in CODES if c.wrong.command != "graph"]


def run(example: Example, folder: Path, monkeypatch) -> list[str]:
    """The codes of the errors ``example`` makes, first to last ([] when it is fine), run in ``folder/work``."""
    work = folder / "work"
    work.mkdir(parents=True)
    for name, text in example.files.items():
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_text(text)
    (work / "net.arch").write_text(example.text)
    monkeypatch.chdir(work)
    if example.command == "check":
        result = CliRunner().invoke(app, ["check", "net.arch", "--format", "json", *example.args])
        assert result.exit_code in (0, 1), result.output
        if result.exit_code == 1 and not result.stdout:  # a command-line mistake, before any spec is read
            return [_usage_code(result.stderr)]
        return [d["code"] for f in json.loads(result.stdout)["files"] for d in f["diagnostics"]]
    assert example.command == "compile"
    options = dict(zip(example.args[::2], example.args[1::2]))
    params = {k: int(v) for k, v in (options["-p"].split("="),)} if "-p" in options else {}
    try:
        archdsl.load("net.arch", network=options.get("--network"), **params)
    except ArchError as err:
        return [err.code]
    return []


def _usage_code(stderr: str) -> str:
    """The code that check's text output gives a command-line error, on its first line: ``... [A700]``."""
    return stderr.splitlines()[0].rsplit("[", 1)[1].rstrip("]")


@pytest.mark.parametrize("code", CHECKED, ids=[c.code for c in CHECKED])
def test_the_wrong_example_makes_its_mistake_and_the_fixed_one_is_clean(code, tmp_path, monkeypatch):
    assert run(code.wrong, tmp_path / "wrong", monkeypatch)[:1] == [code.code]
    assert run(code.fixed, tmp_path / "fixed", monkeypatch) == []


# The code each golden mistake of tests/cases/errors gets: mistakes of one kind share a code (a typo in a layer's
# name and a PyTorch name are both A101), and no two kinds do.
GOLDEN = {
    "01": "A101", "02": "A101", "03": "A101", "04": "A102", "05": "A001", "06": "A102", "07": "A004", "08": "A005",
    "09": "A004", "10": "A003", "11": "A003", "12": "A007", "13": "A002", "14": "A008", "15": "A009", "16": "A006",
    "17": "A201", "18": "A201", "19": "A202", "20": "A203", "21": "A204", "22": "A205", "23": "A301", "24": "A301",
    "25": "A302", "26": "A304", "27": "A304", "28": "A304", "29": "A304", "30": "A305", "31": "A305", "32": "A306",
    "33": "A307", "34": "A206", "35": "A206", "36": "A208", "37": "A206", "38": "A209", "39": "A206", "40": "A210",
    "41": "A210", "42": "A206", "43": "A207", "44": "A207", "45": "A401", "46": "A207", "47": "A105", "48": "A309",
    "49": "A103", "50": "A104", "51": "A106", "52": "A106", "53": "A221", "54": "A222", "55": "A223", "56": "A107",
    "57": "A501", "58": "A502", "59": "A503", "60": "A101", "61": "A310", "62": "A701", "63": "A702", "64": "A703",
    "65": "A704", "66": "A705", "67": "A706", "68": "A202", "69": "A101", "70": "A101", "71": "A110", "72": "A109",
    "73": "A108", "74": "A402", "75": "A403", "76": "A404", "77": "A405", "78": "A405", "79": "A406", "80": "A601",
    "81": "A707", "82": "A602", "83": "A303", "84": "A407", "85": "A408", "86": "A207", "87": "A010", "88": "A111",
    "89": "A211", "90": "A308", "95": "A211", "96": "A212", "97": "A206", "98": "A101", "99": "A206",
    "100": "A315",
}


def test_every_golden_mistake_has_the_code_of_its_kind(in_repo):
    from test_diagnostics import SPECS, compile_case

    found = {}
    for spec in SPECS:
        first = compile_case(spec)[2].splitlines()
        found[spec.name.split("_")[0]] = _code_of_rendered(first)
    assert {key: code for key, code in found.items() if key in GOLDEN} == GOLDEN
    # A new kind of mistake gets a row in archdsl/codes.py (and its case an entry above), not a family's code.
    assert not {key: code for key, code in found.items() if code.endswith("00")}, "a golden mistake without a code"


def _code_of_rendered(lines: list[str]) -> str:
    """The code of a rendered diagnostic, found as archdsl finds it: from its kind, message and hint."""
    from archdsl import errors

    head = lines[0].split(" error: ", 1)[1]
    hint = next((line.removeprefix("  hint: ") for line in lines if line.startswith("  hint: ")), None)
    candidates = [cls(head, hint=hint) for cls in (errors.ParseError, errors.ShapeError, errors.LimitError,
                                                    errors.UsageError, errors.ResolveError)]
    codes = [err.code for err in candidates]
    return next((code for code in codes if not code.endswith("00")), codes[-1])


def test_each_kind_of_message_in_the_goldens_has_one_documented_code():
    assert set(GOLDEN.values()) <= set(BY_CODE)
    assert len(set(GOLDEN.values())) >= 60


def test_an_error_without_a_code_of_its_own_gets_its_family_code():
    assert code_of(ParseError("unexpected ';'; expected a name")) == "A000"
    assert code_of(ResolveError("range(...) with a step of 0")) == "A100"
    assert ArchError("something").code == "A100"


def test_explain_prints_the_entry_and_refuses_an_unknown_code():
    result = CliRunner().invoke(app, ["explain", "a101"])
    assert result.exit_code == 0
    assert result.stdout == explain("A101")
    assert result.stdout.startswith("A101: unknown layer or block\n\nA call names neither a layer kind")
    assert "    network n : [1, 28, 28] = conv3x 6; relu; flatten; linear 10\n\n    $ archdsl check net.arch\n" \
        in result.stdout
    result = CliRunner().invoke(app, ["explain", "A999"])
    assert result.exit_code == 1
    assert result.stderr == ("archdsl: error: no error code 'A999'\n  hint: codes run from A000 to A800; "
                             "`archdsl check` prints each error's code\n")


def test_the_docs_are_made_from_the_table():
    assert (REPO / "docs" / "errors.md").read_text(encoding="utf-8") == markdown()
