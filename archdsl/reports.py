"""``archdsl check --format``: the errors of checked specs as text, JSON, GitHub workflow annotations or SARIF
2.1.0 (for code scanning).

Every format carries each error's code, place (1-based line and column, end exclusive), message, hint and notes
(a call site, an import, the first definition), which SARIF calls related locations::

    $ archdsl check --format github specs/
    ::error file=specs/bad.arch,line=2,col=5,endLine=2,endColumn=11,title=A101 unknown layer or block::unknown ...
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from archdsl.check import Report
from archdsl.errors import ArchError
from archdsl.source import Span

FORMATS = ("text", "json", "github", "sarif")
DOCS = "https://github.com/archdsl/archdsl/blob/main/docs/errors.md"


@dataclass(frozen=True)
class Checked:
    """One spec as the command line named it, and what checking it found."""

    name: str
    report: Report


def location(span: Span | None, file: str | None) -> dict:
    """A place as JSON: the file, and the line and columns when the error has them."""
    if span is None:
        return {"file": file, "line": None, "column": None, "end_line": None, "end_column": None}
    return {"file": span.file, "line": span.line, "column": span.column, "end_line": span.end_line,
            "end_column": span.end_column}


def as_dict(err: ArchError) -> dict:
    """One error as JSON."""
    return {"code": err.code, "severity": "error", "message": err.message, "hint": err.hint,
            **location(err.span, err.file),
            "notes": [{"message": note, **location(where, None)} for note, where in err.notes]}


def as_json(checked: Sequence[Checked]) -> str:
    files = [{"path": c.name, "ok": not c.report.errors, "networks": c.report.summary() if not c.report.errors else None,
              "diagnostics": [as_dict(err) for err in c.report.errors]} for c in checked]
    return json.dumps({"files": files, "errors": sum(len(c.report.errors) for c in checked)}, indent=1,
                      ensure_ascii=False)


def as_github(checked: Sequence[Checked]) -> str:
    """One ``::error`` workflow command per error (GitHub shows them on the lines of a pull request)."""
    lines = []
    for c in checked:
        for err in c.report.errors:
            where = {"file": err.file or c.name}
            if err.span is not None:
                where.update(line=err.span.line, col=err.span.column, endLine=err.span.end_line,
                             endColumn=err.span.end_column)
            where["title"] = f"{err.code} {_title(err.code)}"
            properties = ",".join(f"{key}={_escape(str(value), True)}" for key, value in where.items())
            lines.append(f"::error {properties}::{_escape(_full_message(err), False)}")
    return "".join(line + "\n" for line in lines)


def _escape(text: str, property_value: bool) -> str:
    """GitHub's escaping of workflow command data (and, in properties, of ':' and ',')."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if property_value else text


def _full_message(err: ArchError) -> str:
    lines = [err.message]
    if err.hint:
        lines.append(f"hint: {err.hint}")
    lines += [f"note: {note}" + (f" ({where})" if where is not None else "") for note, where in err.notes]
    return "\n".join(lines)


def _title(code: str) -> str:
    from archdsl.codes import BY_CODE

    return BY_CODE[code].title


def as_sarif(checked: Sequence[Checked], version: str) -> str:
    """A SARIF 2.1.0 log of one run: a rule per code met, a result per error with its related locations."""
    from archdsl.codes import BY_CODE

    codes = sorted({err.code for c in checked for err in c.report.errors})
    rules = [{"id": code, "name": _rule_name(BY_CODE[code].title),
              "shortDescription": {"text": BY_CODE[code].title},
              "fullDescription": {"text": BY_CODE[code].explanation},
              "helpUri": f"{DOCS}#{code.lower()}",
              "defaultConfiguration": {"level": "error"}} for code in codes]
    results = []
    for c in checked:
        for err in c.report.errors:
            result = {"ruleId": err.code, "ruleIndex": codes.index(err.code), "level": "error",
                      "message": {"text": err.message + (f"\nhint: {err.hint}" if err.hint else "")},
                      "locations": [_sarif_location(err.span, err.file or c.name)]}
            related = [{"id": index, **_sarif_location(where, None), "message": {"text": note}}
                       for index, (note, where) in enumerate(err.notes) if where is not None]
            if related:
                result["relatedLocations"] = related
            results.append(result)
    log = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{"tool": {"driver": {"name": "archdsl", "version": version,
                                      "informationUri": "https://github.com/archdsl/archdsl", "rules": rules}},
                  "results": results}],
    }
    return json.dumps(log, indent=1, ensure_ascii=False)


def _rule_name(title: str) -> str:
    """SARIF's rule name: ``unknown layer or block`` -> ``UnknownLayerOrBlock``."""
    import re

    return "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", title))


def _sarif_location(span: Span | None, file: str | None) -> dict:
    physical: dict = {"artifactLocation": {"uri": _uri(span.file if span is not None else file or "")}}
    if span is not None:
        physical["region"] = {"startLine": span.line, "startColumn": span.column, "endLine": span.end_line,
                              "endColumn": span.end_column}
    return {"physicalLocation": physical}


def _uri(path: str) -> str:
    """A relative URI reference for a path as the command line named it (SARIF's artifactLocation.uri)."""
    from urllib.parse import quote

    return quote(path.replace("\\", "/"))
