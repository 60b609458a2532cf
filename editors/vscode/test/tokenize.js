// Tokenise .arch text with the extension's TextMate grammar, as VS Code does (vscode-textmate on the oniguruma
// regular expressions), for tests/test_vscode_extension.py. Each line of standard input is a JSON string, the
// text; each line of output answers it with its tokens, [[line, start, end, [scope, ...]], ...], lines and
// columns from 0, columns in UTF-16 code units (JavaScript's string indices), or with {"error": ...} where
// vscode-textmate complained (a grammar looping without advancing, say).
"use strict";

const fs = require("fs");
const path = require("path");
const readline = require("readline");
const oniguruma = require("vscode-oniguruma");
const textmate = require("vscode-textmate");

const GRAMMAR = path.join(__dirname, "..", "syntaxes", "archdsl.tmLanguage.json");

async function loadGrammar() {
  const wasm = fs.readFileSync(require.resolve("vscode-oniguruma/release/onig.wasm"));
  await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));
  const registry = new textmate.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (text) => new oniguruma.OnigString(text),
    }),
    loadGrammar: async (scopeName) =>
      scopeName === "source.archdsl" ? textmate.parseRawGrammar(fs.readFileSync(GRAMMAR, "utf8"), GRAMMAR) : null,
  });
  return registry.loadGrammar("source.archdsl");
}

function tokenize(grammar, text) {
  const tokens = [];
  let stack = textmate.INITIAL;
  text.split("\n").forEach((line, number) => {
    const result = grammar.tokenizeLine(line, stack);
    for (const token of result.tokens) {
      tokens.push([number, token.startIndex, Math.min(token.endIndex, line.length), token.scopes]);
    }
    stack = result.ruleStack;
  });
  return tokens;
}

async function main() {
  const warnings = [];
  console.error = console.warn = console.log = (...args) => warnings.push(args.join(" "));
  const grammar = await loadGrammar();
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of lines) {
    warnings.length = 0;
    const tokens = tokenize(grammar, JSON.parse(line));
    process.stdout.write(JSON.stringify(warnings.length ? { error: warnings.join("\n") } : tokens) + "\n");
  }
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
