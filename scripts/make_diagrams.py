"""Draw the pictures of docs/diagrams.md (and the README's) into docs/img/, with ``archdsl graph``'s code.

    python scripts/make_diagrams.py

Run it after a change to the diagrams or to the specs they show; it rewrites every picture. The
specs are named relative to the repository, so the tooltips (hover over a node in a browser) read
``specs/lib/inception.arch:3:7`` whichever folder the script runs from.
"""

from __future__ import annotations

import os
from pathlib import Path

import archdsl
from archdsl.graphviz_backend import save

ROOT = Path(__file__).resolve().parents[1]
IMG = ROOT / "docs" / "img"

# (file in docs/img, spec, options of CompiledNetwork.graph)
PICTURES = [
    ("googlenet.svg", "specs/googlenet.arch", {}),
    ("googlenet-depth1.svg", "specs/googlenet.arch", {"depth": 1}),
    ("resnet18.svg", "specs/resnet18.arch", {}),
    ("resnet18-depth2.svg", "specs/resnet18.arch", {"depth": 2}),
    ("densenet-depth1.svg", "specs/densenet.arch", {"depth": 1}),
]


def main() -> None:
    os.chdir(ROOT)
    IMG.mkdir(parents=True, exist_ok=True)
    for name, spec, options in PICTURES:
        save(archdsl.load(spec).graph(**options), IMG / name)
        print(f"wrote docs/img/{name} ({(IMG / name).stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
