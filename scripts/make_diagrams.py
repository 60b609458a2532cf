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

# (file in docs/img, spec, its network (None: its only one), options of CompiledNetwork.graph); the zoo's specs by
# their path, so that the tooltips name archdsl/zoo/... rather than where the package is installed.
PICTURES = [
    ("googlenet.svg", "specs/googlenet.arch", None, {}),
    ("googlenet-depth1.svg", "specs/googlenet.arch", None, {"depth": 1}),
    ("resnet18.svg", "specs/resnet18.arch", None, {}),
    ("resnet18-depth2.svg", "specs/resnet18.arch", None, {"depth": 2}),
    ("densenet-depth1.svg", "specs/densenet.arch", None, {"depth": 1}),
    ("d2l_vit.svg", "specs/d2l_vit.arch", None, {}),
    ("vit_b_16-depth1.svg", "archdsl/zoo/vit.arch", "vit_b_16", {"depth": 1}),
    ("swin_t-depth2.svg", "archdsl/zoo/swin.arch", "swin_t", {"depth": 2}),
]


def main() -> None:
    os.chdir(ROOT)
    IMG.mkdir(parents=True, exist_ok=True)
    for name, spec, network, options in PICTURES:
        save(archdsl.load(spec, network=network).graph(**options), IMG / name)
        print(f"wrote docs/img/{name} ({(IMG / name).stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
