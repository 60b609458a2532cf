"""Write the tables of docs/zoo.md from the zoo and from torchvision, so that the page stays true.

    python scripts/zoo_table.py            # rewrite the tables between their markers in docs/zoo.md
    python scripts/zoo_table.py --check    # exit 1 if the page's tables differ from what they would be

Two tables: every builder with archdsl's parameters and MACs beside torchvision's (its model built on the meta
device, and the GFLOPS its weights document), and every family with the lines its spec takes against the lines
of torchvision's Python. torchvision is the tests' oracle (tests/torchvision_oracle.py), not a dependency.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import torchvision_oracle

import archdsl
from archdsl import zoo

PAGE = ROOT / "docs" / "zoo.md"
MARKERS = {
    "builders": ("<!-- builders: scripts/zoo_table.py -->", "<!-- end builders -->"),
    "families": ("<!-- families: scripts/zoo_table.py -->", "<!-- end families -->"),
}
# The module of torchvision.models that builds each family.
MODULES = {"inception_v3": "inception", "mobilenet_v2": "mobilenetv2", "mobilenet_v3": "mobilenetv3",
           "shufflenet_v2": "shufflenetv2", "swin": "swin_transformer", "swin_v2": "swin_transformer",
           "vit": "vision_transformer"}


def builders() -> str:
    """A row per builder: archdsl's input, parameters and MACs, torchvision's parameters and GFLOPS."""
    models = torchvision_oracle.import_torchvision().models
    rows = ["| network | spec | input | params | torchvision params | MACs | torchvision GFLOPS | MACs / GFLOPS |",
            "|---|---|---|---:|---:|---:|---:|---:|"]
    for name, path in zoo.index().items():
        net = archdsl.load(name)
        theirs = sum(p.numel() for p in torchvision_oracle.on_meta(name).parameters())
        weights = models.get_model_weights(name).DEFAULT
        gflops = weights.meta["_ops"]
        same = "=" if theirs == net.params else f"{theirs:,}"
        size = "×".join(str(d) for d in net.input_shape)
        macs, crop = net.macs, weights.transforms().crop_size[0]
        if crop != net.input_shape[-1] and "image_size" in net.param_values:
            # ViT-H/14's weights are at 518 where its builder's default is 224: its MACs there, against theirs.
            macs = archdsl.load(name, image_size=crop).macs
            size += f" (MACs at {crop}×{crop}, its weights')"
        rows.append(f"| `{name}` | {path.name} | {size} | {net.params:,} | {same} | {macs:,} | {gflops} | "
                    f"{macs / (gflops * 1e9):.4f} |")
    return "\n".join(rows)


def families() -> str:
    """A row per family spec: its builders and lines, against torchvision's module (counted once in the total
    where two specs share it, as Swin's and Swin V2's do)."""
    torchvision_oracle.import_torchvision()
    rows = ["| spec | builders | spec lines | torchvision module | its lines |", "|---|---:|---:|---|---:|"]
    index = zoo.index()
    total_ours = total_theirs = 0
    counted: set[str] = set()
    for path in sorted(zoo.ZOO.glob("*.arch")):
        count = sum(1 for network in index.values() if network == path)
        module = MODULES.get(path.stem, path.stem)
        ours = spec_lines(path.read_text(encoding="utf-8"))
        source = Path(importlib.import_module(f"torchvision.models.{module}").__file__)
        theirs = python_lines(source.read_text(encoding="utf-8"))
        total_ours, total_theirs = total_ours + ours, total_theirs + (0 if module in counted else theirs)
        counted.add(module)
        rows.append(f"| {path.name} | {count} | {ours} | `torchvision/models/{module}.py` | {theirs} |")
    rows.append(f"| all | {len(index)} | {total_ours} | | {total_theirs} |")
    return "\n".join(rows)


def spec_lines(text: str) -> int:
    """Lines of a spec that hold more than a comment."""
    return sum(1 for line in text.splitlines() if line.strip() and not line.strip().startswith("#"))


def python_lines(text: str) -> int:
    """Lines of a torchvision module that build models: its classes and functions without docstrings,
    comments or blank lines; imports, ``__all__``, the weights' enums and their metadata are left out."""
    tree = ast.parse(text)
    kept: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("_Weights"):
            continue
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            kept.update(range(start, node.end_lineno + 1))
    for node in ast.walk(tree):  # docstrings
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            kept.difference_update(range(body[0].lineno, body[0].end_lineno + 1))
    code: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER):
            code.update(range(token.start[0], token.end[0] + 1))
    return len(kept & code)


def page(text: str) -> str:
    for key, table in (("builders", builders()), ("families", families())):
        start, end = MARKERS[key]
        found = re.search(re.escape(start) + ".*?" + re.escape(end), text, re.DOTALL)
        if found is None:
            sys.exit(f"{PAGE}: no {start} ... {end} section")
        text = f"{text[:found.start()]}{start}\n{table}\n{end}{text[found.end():]}"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if the tables are stale")
    args = parser.parse_args()
    text = PAGE.read_text(encoding="utf-8")
    new = page(text)
    if args.check:
        sys.exit(0 if new == text else f"{PAGE.relative_to(ROOT)} is stale: run python scripts/zoo_table.py")
    PAGE.write_text(new, encoding="utf-8")
    print(f"wrote {PAGE.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
