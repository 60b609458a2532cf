"""The VS Code extension (editors/vscode/): its TextMate grammar against archdsl's parser on every shipped spec,
tokenised by vscode-textmate as VS Code does; the .vsix that the documented command builds; the client's choice
of the server's command.

These need Node.js and the extension's npm packages (``npm ci`` in editors/vscode, which scripts/setup.sh runs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import lark
import pytest
from highlighting import KEYWORDS, SPEC_FILES, expected_tokens
from hypothesis import HealthCheck, assume, given, settings
from lark import Lark
from test_fuzz import grammar_programs

from archdsl.parser import GRAMMAR

REPO = Path(__file__).resolve().parents[1]
EXTENSION = REPO / "editors" / "vscode"


def _node() -> str | None:
    """Node.js on the PATH, or the one scripts/setup.sh installs into the virtual environment."""
    beside = Path(sys.executable).with_name("node")
    return shutil.which("node") or (str(beside) if beside.exists() else None)


NODE = _node()
MISSING = ("Node.js 20 or later (scripts/setup.sh installs it)" if NODE is None
           else "the extension's npm packages (cd editors/vscode && npm ci)"
           if not (EXTENSION / "node_modules").is_dir() else None)
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI runs the VS Code extension's tests, and this machine lacks {MISSING}")
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"needs {MISSING}")
# vsce runs npm, which is beside node.
NODE_PATH = {**os.environ, "PATH": os.pathsep.join([str(Path(NODE or "node").parent), os.environ.get("PATH", "")])}

CI = settings(max_examples=300, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                     HealthCheck.function_scoped_fixture])
CONTROL = {"repeat": "repeat", "for": "for", "in": "in", "if": "conditional", "then": "conditional",
           "else": "conditional"}
SCOPES = {
    "keyword.import": "keyword.control.import", "keyword.default": "keyword.other.default",
    "keyword.block": "storage.type.block", "keyword.network": "storage.type.network",
    "keyword.join": "keyword.other.join", "keyword.logical": "keyword.operator.logical",
    "boolean": "constant.language.boolean", "layer": "support.function.layer",
    "block": "entity.name.function.block", "network": "entity.name.type.network",
    "function": "support.function.builtin", "parameter": "variable.parameter",
    "argument": "entity.other.attribute-name", "variable": "variable.other", "input": "variable.language.input",
    "integer": "constant.numeric.integer", "float": "constant.numeric.float", "string": "string.quoted.double",
    "comment": "comment.line.number-sign",
}


def expected_scope(cls: str, text: str) -> str:
    scope = f"keyword.control.{CONTROL[text]}" if cls == "keyword.control" else SCOPES[cls]
    return f"{scope}.archdsl"


CLASSIFIED = {f"{scope}.archdsl" for scope in SCOPES.values()} | {f"keyword.control.{word}.archdsl"
                                                                   for word in CONTROL.values()}


class Tokeniser:
    """editors/vscode/test/tokenize.js kept running: one text in, its TextMate tokens out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([NODE, str(EXTENSION / "test" / "tokenize.js")], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, encoding="utf-8")

    def __call__(self, text: str) -> list:
        self.process.stdin.write(json.dumps(text) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert isinstance(answer, list), answer["error"]
        return answer

    def close(self) -> None:
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


@pytest.fixture(scope="module")
def tokenise():
    tokeniser = Tokeniser()
    yield tokeniser
    tokeniser.close()


def scope_map(text: str, tokens: list) -> dict[int, str]:
    """Character offset -> the innermost scope of the TextMate token over it, where that scope classifies."""
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def offset(line: int, units: int) -> int:  # JavaScript counts UTF-16 code units
        return starts[line] + len(lines[line].encode("utf-16-le")[:2 * units].decode("utf-16-le"))

    found = {}
    for line, start, end, scopes in tokens:
        if scopes[-1] in CLASSIFIED:
            found.update(dict.fromkeys(range(offset(line, start), offset(line, end)), scopes[-1]))
    return found


def mismatches(name: str, text: str, tokens: list) -> list[str]:
    """Where the TextMate scopes differ from the parser's classes, one line each: ``name:line:column: ...``."""
    expected = {offset: expected_scope(token.cls, token.text)
                for token in expected_tokens(text) for offset in range(token.start, token.end)}
    actual = scope_map(text, tokens)
    wrong = []
    for offset in sorted(expected.keys() | actual.keys()):
        if expected.get(offset) != actual.get(offset):
            line = text.count("\n", 0, offset) + 1
            column = offset - text.rfind("\n", 0, offset)
            wrong.append(f"{name}:{line}:{column}: {text[offset]!r} expected {expected.get(offset)}, "
                         f"got {actual.get(offset)}")
    return wrong


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda path: str(path.relative_to(REPO)))
def test_every_token_of_every_spec_has_the_parsers_scope(path, tokenise):
    """Every keyword, layer, block, network, function, parameter, argument, variable, number, string and comment
    of the shipped specs gets the scope its rule in archdsl's grammar says, and nothing else gets one of those
    scopes: a layer is told from a variable by its place, never by a list of kinds."""
    text = path.read_text(encoding="utf-8")
    wrong = mismatches(str(path.relative_to(REPO)), text, tokenise(text))
    assert not wrong, "\n".join(wrong[:40])


@CI
@given(grammar_programs())
def test_programs_drawn_from_the_grammar_have_the_parsers_scopes(tokenise, text):
    """The same on programs drawn from grammar.lark (tests/test_fuzz.py's generator), with every construct in
    every place the grammar allows, spread over lines."""
    try:
        expected_tokens(text)
    except lark.exceptions.LarkError:
        assume(False)  # a drawn name that is a keyword
    wrong = mismatches("drawn.arch", text, tokenise(text))
    assert not wrong, text + "\n" + "\n".join(wrong[:40])


def test_the_specs_use_every_keyword_of_the_grammar():
    """A keyword added to grammar.lark must be taught to the highlighters (and to highlighting.py's table):
    the specs above show each keyword at least once, so that the test above checks its colour."""
    terminals = Lark(GRAMMAR.read_text(), parser="lalr").terminals
    words = {t.name for t in terminals if t.pattern.type == "str" and t.pattern.value.isalpha()}
    assert words == set(KEYWORDS)
    used = {token.text for path in SPEC_FILES for token in expected_tokens(path.read_text(encoding="utf-8"))
            if token.cls.startswith("keyword.")}
    assert used == {word.lower() for word in KEYWORDS}


def test_a_keyword_inside_a_comment_or_a_name_is_not_one(tokenise):
    """A definition keyword ends a body only as a word of its own: in a comment, or inside a longer name, it
    leaves the body open."""
    text = "network blocks : [1, 4, 4] =   # a block network\n    flatten; linear network_size\n"
    scopes = [(line, scopes[-1]) for line, _, _, scopes in tokenise(text)]
    assert (0, "comment.line.number-sign.archdsl") in scopes
    assert ([scope for line, scope in scopes if line == 1 and scope in CLASSIFIED]
            == ["support.function.layer.archdsl", "support.function.layer.archdsl", "variable.other.archdsl"])


def test_the_documented_command_builds_the_vsix(tmp_path):
    """``npm run package`` (vsce) makes a .vsix with the manifest, the grammar, the language configuration, the
    client and its one runtime dependency, and none of the tools the tests use."""
    out = tmp_path / "archdsl.vsix"
    result = subprocess.run([NODE, str(EXTENSION / "node_modules" / "@vscode" / "vsce" / "vsce"), "package",
                             "--out", str(out)], cwd=EXTENSION, env=NODE_PATH, capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    names = set(zipfile.ZipFile(out).namelist())
    assert {"extension.vsixmanifest", "extension/package.json", "extension/readme.md", "extension/LICENSE.txt",
            "extension/language-configuration.json", "extension/syntaxes/archdsl.tmLanguage.json",
            "extension/src/extension.js", "extension/src/server.js",
            "extension/node_modules/vscode-languageclient/package.json"} <= names
    assert not {name for name in names if name.startswith(("extension/test/", "extension/node_modules/vscode-textmate",
                                                           "extension/node_modules/@vscode/vsce"))}
    manifest = zipfile.ZipFile(out).read("extension.vsixmanifest").decode()
    assert 'Id="archdsl"' in manifest and 'Version="0.1.0"' in manifest


def server_command(interpreter: str | None, platform: str, folder: str | None = None) -> dict:
    code = ("const {serverCommand} = require(process.argv[1]); "
            "console.log(JSON.stringify(serverCommand(JSON.parse(process.argv[2]), process.argv[3], "
            "JSON.parse(process.argv[4]))))")
    result = subprocess.run([NODE, "-e", code, str(EXTENSION / "src" / "server.js"), json.dumps(interpreter),
                             platform, json.dumps(folder)], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)


def test_the_client_starts_archdsl_lsp_from_the_chosen_python():
    """The server is ``PYTHON -m archdsl lsp`` over stdio: the interpreter configured (with ${workspaceFolder}
    and ~ expanded) or the Python extension's, else python3 (python on Windows)."""
    lsp = ["-m", "archdsl", "lsp"]
    assert server_command("/opt/venv/bin/python", "linux") == {"command": "/opt/venv/bin/python", "args": lsp}
    assert server_command("${workspaceFolder}/.venv/bin/python", "linux", "/home/me/net") == {
        "command": "/home/me/net/.venv/bin/python", "args": lsp}
    home = server_command("~/venv/bin/python", "darwin")["command"]
    assert home == str(Path.home() / "venv/bin/python")
    assert server_command(None, "linux") == {"command": "python3", "args": lsp}
    assert server_command("", "win32") == {"command": "python", "args": lsp}


def test_the_command_the_client_builds_starts_the_language_server():
    """What the client runs for this environment's interpreter answers LSP's initialize over stdio, as VS Code's
    client sends it, and exits on shutdown and exit."""
    pytest.importorskip("pygls", reason="the language server needs the lsp extra")
    server = server_command(sys.executable, sys.platform)
    process = subprocess.Popen([server["command"], *server["args"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               cwd=REPO)

    def send(message: dict) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode()
        process.stdin.write(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        process.stdin.flush()

    def reply(to: int) -> dict:
        """The answer to request ``to``, past any notification the server sends meanwhile."""
        while True:
            length = 0
            while (line := process.stdout.readline().strip()):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            message = json.loads(process.stdout.read(length))
            if message.get("id") == to:
                return message

    try:
        send({"id": 1, "method": "initialize", "params": {"processId": None, "rootUri": REPO.as_uri(),
                                                           "capabilities": {}}})
        answer = reply(1)
        assert answer["result"]["serverInfo"]["name"].startswith("archdsl")
        assert {"hoverProvider", "definitionProvider", "inlayHintProvider"} <= answer["result"]["capabilities"].keys()
        send({"method": "initialized", "params": {}})
        send({"id": 2, "method": "shutdown"})
        assert reply(2) == {"jsonrpc": "2.0", "id": 2, "result": None}
        send({"method": "exit"})
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.stdin.close()
        process.stdout.close()
