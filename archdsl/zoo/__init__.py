"""The zoo: torchvision's convolutional classifiers by name, one parametric spec per family.

The family specs are this package's ``*.arch`` files (package data, so an installed wheel has them), each
defining one network per torchvision builder under the builder's own name: ``resnet.arch`` holds
``resnet18`` ... ``resnet152``, the ResNeXts and the Wide ResNets. Blocks that several families share live in
``lib/`` (the Transformer encoder block), which the family specs import.

    $ archdsl compile resnet50                  # the zoo's resnet50, from any folder
    >>> archdsl.load("resnet50").params
    25557032

An argument that is an existing file is that file; a bare name (letters, digits and underscores) that is
not one is looked up here, so ``specs/resnet18.arch`` stays the book's ResNet-18 while ``resnet18`` is
torchvision's.
"""

from __future__ import annotations

import functools
import os
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from archdsl.errors import UsageError

ZOO = Path(__file__).resolve().parent

_BARE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A definition starts a line; the networks are found without parsing, so a lookup costs a directory listing.
_NETWORK = re.compile(r"^[ \t]*network\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


@functools.cache
def index() -> dict[str, Path]:
    """Every zoo network's name and the family spec that defines it, families in file-name order."""
    found: dict[str, Path] = {}
    for path in sorted(ZOO.glob("*.arch")):
        for match in _NETWORK.finditer(path.read_text(encoding="utf-8")):
            found[match.group(1)] = path
    return found


def locate(spec: str | Path, network: str | None = None) -> tuple[str | Path, str | None]:
    """A spec argument and its ``--network`` as a file and a network: unchanged for anything that exists or
    is not a bare name, the family spec and the name itself for a zoo name.

    >>> locate("resnet50")                                  # doctest: +SKIP
    (PosixPath('.../archdsl/zoo/resnet.arch'), 'resnet50')
    """
    name = os.fspath(spec)
    if not _BARE_NAME.fullmatch(name) or os.path.lexists(name):
        return spec, network
    path = index().get(name)
    if path is None:
        import difflib

        close = difflib.get_close_matches(name, index(), n=1, cutoff=0.6)
        raise UsageError(f"'{name}' is neither a file nor a network of the zoo",
                         hint=f"did you mean '{close[0]}'? `archdsl zoo` lists them" if close
                         else "`archdsl zoo` lists the zoo's networks; a spec file's path names a file")
    if network is not None and network != name:
        raise UsageError(f"{name} is a network of the zoo; --network {network} chooses among a spec file's networks",
                         hint=f"leave out --network, or give a spec file ({_shown(path)} defines {name})")
    return path, name


def is_zoo_file(path: str | Path) -> bool:
    """Whether ``path`` is one of the zoo's own family specs or the blocks they import from ``zoo/lib/`` (which
    ``fmt --write`` must leave alone)."""
    return Path(path).resolve().parent in (ZOO, ZOO / "lib")


def _shown(path: Path) -> str:
    """``path`` relative to the current folder when it is below it, else in full."""
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


@dataclass(frozen=True)
class Entry:
    """One builder of the zoo at its defaults: what ``archdsl zoo`` prints."""

    name: str
    family: str
    input: tuple[int, ...]
    params: int
    macs: int

    def as_json(self) -> dict:
        return {"network": self.name, "family": self.family, "input": list(self.input), "params": self.params,
                "macs": self.macs}


def entries() -> list[Entry]:
    """Every zoo network compiled at its defaults (each family spec is parsed once)."""
    from archdsl.compiled import load

    found = []
    for name, path in index().items():
        net = load(path, network=name)
        found.append(Entry(name, path.stem, tuple(net.input_shape), net.params, net.macs))
    return found


def table(rows: list[Entry]) -> str:
    """``archdsl zoo``'s table: one builder a line, with its family spec, input, parameters and MACs."""
    from archdsl import ir
    from archdsl.summary import MACS_LEGEND, format_table

    body = [[e.name, f"{e.family}.arch", ir.format_shape(e.input), f"{e.params:,}", f"{e.macs:,}"] for e in rows]
    text = format_table(["network", "spec", "input", "params", "MACs"], body, right={2, 3, 4})
    where = f"{len(rows)} networks; their family specs are in {_shown(ZOO)}"
    return f"{text}\n\n{where}\n{textwrap.fill(MACS_LEGEND, width=100)}\n"


def as_json(rows: list[Entry]) -> dict:
    """``archdsl zoo --json``."""
    from archdsl.summary import MACS_LEGEND

    return {"folder": str(ZOO), "networks": [e.as_json() for e in rows], "legend": MACS_LEGEND}
