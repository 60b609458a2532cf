// The archdsl extension: the language (grammar and configuration come from package.json) and a client of the
// archdsl language server, `python -m archdsl lsp` over stdio, from the configured Python environment.
"use strict";

const vscode = require("vscode");
const { LanguageClient, TransportKind } = require("vscode-languageclient/node");
const { serverCommand } = require("./server");

const PYTHON_EXTENSION = "ms-python.python";
let client;

/** The interpreter to run the server with: the `archdsl.interpreter` setting, else the Python extension's. */
async function interpreter(folder) {
  const configured = vscode.workspace.getConfiguration("archdsl", folder).get("interpreter");
  if (configured) {
    return configured;
  }
  const python = vscode.extensions.getExtension(PYTHON_EXTENSION);
  if (!python) {
    return undefined;
  }
  const api = python.isActive ? python.exports : await python.activate();
  const environments = api && api.environments;
  if (!environments) {
    return undefined;
  }
  const active = environments.getActiveEnvironmentPath(folder && folder.uri);
  const resolved = await environments.resolveEnvironment(active);
  return (resolved && resolved.executable && resolved.executable.uri && resolved.executable.uri.fsPath) || active.path;
}

async function start(context) {
  const folder = vscode.workspace.workspaceFolders && vscode.workspace.workspaceFolders[0];
  const { command, args } = serverCommand(await interpreter(folder), process.platform, folder && folder.uri.fsPath);
  const executable = { command, args, transport: TransportKind.stdio, options: { cwd: folder && folder.uri.fsPath } };
  client = new LanguageClient(
    "archdsl",
    "archdsl",
    { run: executable, debug: executable },
    {
      documentSelector: [{ language: "archdsl" }],
      synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher("**/*.arch") },
    },
  );
  try {
    await client.start();
  } catch (err) {
    vscode.window.showErrorMessage(
      `archdsl: could not start '${command} ${args.join(" ")}' (${err.message || err}). ` +
        "Install archdsl there (pip install 'archdsl[lsp]'), or choose another environment in the setting " +
        "archdsl.interpreter.",
    );
  }
}

async function restart(context) {
  if (client) {
    const old = client;
    client = undefined;
    await old.dispose();
  }
  await start(context);
}

async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand("archdsl.restartServer", () => restart(context)),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration("archdsl.interpreter")) {
        restart(context);
      }
    }),
  );
  const python = vscode.extensions.getExtension(PYTHON_EXTENSION);
  if (python) {
    const api = await python.activate();
    if (api && api.environments && api.environments.onDidChangeActiveEnvironmentPath) {
      context.subscriptions.push(
        api.environments.onDidChangeActiveEnvironmentPath(() => {
          if (!vscode.workspace.getConfiguration("archdsl").get("interpreter")) {
            restart(context);
          }
        }),
      );
    }
  }
  await start(context);
}

async function deactivate() {
  if (client) {
    await client.dispose();
  }
}

module.exports = { activate, deactivate };
