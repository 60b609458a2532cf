// How the client starts the language server, apart from VS Code's API so that a test can run it under Node.
"use strict";

const os = require("os");
const path = require("path");

// The server is archdsl's own command, run by the interpreter of the environment archdsl is installed in.
const SERVER_ARGS = ["-m", "archdsl", "lsp"];

/**
 * The server's command: `interpreter -m archdsl lsp`, talking LSP on its standard input and output.
 * `interpreter` is the `archdsl.interpreter` setting or the Python extension's choice; `${workspaceFolder}`
 * and a leading `~` in it are expanded. Without one, `python3` on the PATH (`python` on Windows).
 *
 *     serverCommand("${workspaceFolder}/.venv/bin/python", "linux", "/home/me/nets")
 *     // {command: "/home/me/nets/.venv/bin/python", args: ["-m", "archdsl", "lsp"]}
 */
function serverCommand(interpreter, platform, workspaceFolder) {
  if (!interpreter) {
    return { command: platform === "win32" ? "python" : "python3", args: SERVER_ARGS };
  }
  let command = interpreter;
  if (workspaceFolder) {
    command = command.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  if (command === "~" || command.startsWith("~/")) {
    command = path.join(os.homedir(), command.slice(1));
  }
  return { command, args: SERVER_ARGS };
}

module.exports = { serverCommand };
