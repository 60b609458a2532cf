#!/usr/bin/env bash
# CI's packaging checks, each in environments of its own, one line with its time when it passes, its whole
# output when it fails:
#   lowest  the lowest versions pyproject.toml allows for the core (uv's lowest-direct resolution, no torch)
#           run the CLI, diagnostics and packaging tests;
#   d2l     archdsl[train] and d2l 1.0.3 (numpy 1.23.5, matplotlib 3.7.2) resolve together (nothing installed);
#   dist    the sdist and the wheel build (the wheel from the sdist); the wheel, installed in a clean
#           environment without torch, runs compile, check, graph and fmt on specs copied elsewhere, the
#           zoo's networks by name there (the family specs are package data), and train there names the
#           extra it needs.
# Usage: bash scripts/ci_packaging.sh [STEP...]   (default: all three). Downloads go through pip's and uv's caches.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/archdsl-packaging.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
UV=$WORK/tools/bin/uv

# torch is never left to a resolver (it would pick a multi-GB CUDA build): where one is resolved, it is this.
TORCH=torch==2.13.0

lowest() {
    "$UV" venv -q --python "$PYTHON" "$WORK/lowest"
    VIRTUAL_ENV=$WORK/lowest "$UV" pip install -q --resolution lowest-direct -e "$REPO" "pytest>=8"
    VIRTUAL_ENV=$WORK/lowest "$UV" pip freeze  # in the log: the versions that were tested
    "$WORK/lowest/bin/python" -m pytest -q -p no:cacheprovider tests/test_cli.py tests/test_diagnostics.py \
        tests/test_packaging.py
}

d2l() {
    echo "$TORCH" >"$WORK/torch.txt"
    printf 'd2l==1.0.3\narchdsl[train] @ file://%s\n' "$REPO" |
        "$UV" pip compile -q --python "$PYTHON" --constraint "$WORK/torch.txt" - -o "$WORK/d2l.txt"
    cat "$WORK/d2l.txt"
    grep -qx 'numpy==1.23.5' "$WORK/d2l.txt" && grep -qx 'matplotlib==3.7.2' "$WORK/d2l.txt"
}

dist() {
    "$WORK/tools/bin/python" -m build --installer uv --outdir "$WORK/dist" "$REPO"
    "$WORK/tools/bin/python" - "$WORK/dist" <<'EOF'
import sys, tarfile, zipfile
from pathlib import Path

dist = Path(sys.argv[1])
(sdist,), (wheel,) = dist.glob("*.tar.gz"), dist.glob("*.whl")
in_sdist = {name.split("/", 1)[1] for name in tarfile.open(sdist).getnames() if "/" in name}
needed = {"LICENSE", "README.md", "pyproject.toml", "tests/conftest.py", "tests/test_cli.py",
          "tests/cases/errors/01_unknown_layer_typo.expected", "specs/vgg16.arch", "specs/lib/vgg.arch",
          "archdsl/grammar.lark", "archdsl/grammar_tables.json", "archdsl/zoo/resnet.arch"}
in_wheel = zipfile.ZipFile(wheel).namelist()
missing = sorted(needed - in_sdist) + [f"wheel: {name}" for name in ("LICENSE", "archdsl/grammar_tables.json",
                                                                      "archdsl/zoo/resnet.arch")
                                       if not any(entry.endswith(name) for entry in in_wheel)]
sys.exit(f"missing from the distributions: {missing}" if missing else None)
EOF
    "$UV" venv -q --python "$PYTHON" "$WORK/clean"
    VIRTUAL_ENV=$WORK/clean "$UV" pip install -q "$WORK"/dist/*.whl
    if VIRTUAL_ENV=$WORK/clean "$UV" pip freeze | grep -Ei '^(torch|numpy|matplotlib)=='; then
        echo "the core installed an extra's package" && return 1
    fi
    mkdir "$WORK/elsewhere" && cp -r "$REPO/specs" "$WORK/elsewhere/" && cd "$WORK/elsewhere"
    local bin=$WORK/clean/bin
    "$bin/archdsl" --version
    "$bin/archdsl" compile specs/resnet18.arch --depth 1
    "$bin/archdsl" check specs/*.arch
    "$bin/archdsl" graph specs/googlenet.arch -o googlenet.dot --depth 1
    "$bin/archdsl" fmt --check specs/*.arch specs/lib/*.arch
    "$bin/python" -m archdsl export specs/lenet.arch -o lenet.py
    # The zoo by name, from the installed package; a name that is a file here is that file.
    "$bin/archdsl" zoo
    "$bin/archdsl" compile resnet50 --json >resnet50.json
    "$bin/archdsl" graph densenet121 -o densenet121.dot --depth 2
    "$bin/archdsl" check vgg16_bn
    "$bin/python" -c 'import archdsl; assert archdsl.load("resnet18").params == 11_689_512  # torchvision'
    (cd specs && cp resnet18.arch resnet18 && "$bin/archdsl" compile resnet18 --json >../resnet18.json)  # a file there
    "$bin/python" -c 'import json
assert json.load(open("resnet50.json"))["params"] == 25_557_032  # torchvision
assert json.load(open("resnet18.json"))["params"] == 11_178_378  # the file: the book s ResNet-18'
    local status=0
    "$bin/archdsl" train specs/lenet.arch --epochs 1 >train.out 2>&1 || status=$?
    cat train.out
    [ "$status" = 1 ] && grep -q "pip install 'archdsl\[train\]'" train.out && ! grep -q Traceback train.out
}

failed=0
step() {
    local start=$SECONDS log=$WORK/$1.log
    # In the background, then waited for: a function run as a condition (if, ||) would ignore set -e, so
    # neither is step itself.
    ("$1") >"$log" 2>&1 &
    if wait $!; then
        echo "packaging: $1 ok ($((SECONDS - start)) s)"
    else
        echo "packaging: $1 FAILED ($((SECONDS - start)) s):" >&2
        cat "$log" >&2
        failed=1
    fi
}

start=$SECONDS
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/pip" install -q uv build >"$WORK/tools.log" 2>&1 || { cat "$WORK/tools.log" >&2; exit 1; }
echo "packaging: tools ok ($((SECONDS - start)) s)"
steps=("$@")
[ $# -gt 0 ] || steps=(lowest d2l dist)
for name in "${steps[@]}"; do
    step "$name"
done
exit $failed
