"""``archdsl compare``: two networks side by side, or a spec against a Python model.

Side by side, parameters and MACs are summed per layer family (convolution, linear,
normalisation, ...: each kind's ``family`` in the registry) and in total, with B's count over A's.
That answers "how do AlexNet's and VGG's parameter counts compare" and "how many MACs sit in the
convolutions and how many in the fully connected layers" from the resolved graphs alone::

    archdsl compare specs/alexnet.arch specs/vgg11.arch
    archdsl compare specs/vgg11.arch --param-b ratio=4

Against a reference (a factory or class in a Python module, ``references:vgg11``), it checks the
parameter count, the output shape and the ``state_dict``: tensors are matched by shape and order
(a diff of the two lists of shapes), so one missing tensor shows as one difference rather than
shifting every pair after it. With ``load_weights`` the reference's tensors are copied in by
position and the outputs compared.
"""

from __future__ import annotations

import difflib
import importlib
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from archdsl import ir
from archdsl.compiled import CompiledNetwork
from archdsl.errors import UsageError
from archdsl.layers import REGISTRY
from archdsl.summary import ATTENTION_LEGEND, MACS_LEGEND, format_table, json_dim, json_shape
from archdsl.symbolic import Dim

FAMILIES = tuple(dict.fromkeys(kind.family for kind in REGISTRY.values()))

# Outputs count as agreeing within float32 noise: the same arithmetic in another order.
RTOL, ATOL = 1e-4, 1e-5


# -- side by side ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Costs:
    layers: int = 0
    params: Dim = 0
    macs: Dim = 0

    def __add__(self, other: Costs) -> Costs:
        return Costs(self.layers + other.layers, self.params + other.params, self.macs + other.macs)

    def as_json(self) -> dict:
        return {"layers": self.layers, "params": json_dim(self.params), "macs": json_dim(self.macs)}


def by_family(network: ir.Network) -> dict[str, Costs]:
    """Layers, parameters and MACs per layer family, in the registry's order of families.

    >>> by_family(archdsl.load("specs/lenet.arch").ir)["linear"]   # doctest: +SKIP
    Costs(layers=3, params=59134, macs=58920)
    """
    costs: dict[str, Costs] = {}
    for layer in ir.layers(network.body):
        family = REGISTRY[layer.kind].family
        costs[family] = costs.get(family, Costs()) + Costs(1, layer.params, layer.macs)
    return {family: costs[family] for family in FAMILIES if family in costs}


def ratio(a: Dim, b: Dim) -> float | None:
    """B over A, or None where it is undefined (A is zero, or a count is symbolic)."""
    if not isinstance(a, int) or not isinstance(b, int) or a == 0:
        return None
    return b / a


def side_by_side(a: CompiledNetwork, b: CompiledNetwork) -> dict:
    """Both networks' costs per family and in total, with the ratios B/A: the JSON form."""
    costs_a, costs_b = by_family(a.ir), by_family(b.ir)
    rows = []
    for family in FAMILIES:
        if family in costs_a or family in costs_b:
            ca, cb = costs_a.get(family, Costs()), costs_b.get(family, Costs())
            rows.append({"family": family, "a": ca.as_json(), "b": cb.as_json(), "ratio": _ratios(ca, cb)})
    total_a = Costs(sum(c.layers for c in costs_a.values()), a.params, a.macs)
    total_b = Costs(sum(c.layers for c in costs_b.values()), b.params, b.macs)
    return {
        "a": _describe(a),
        "b": _describe(b),
        "families": rows,
        "total": {"a": total_a.as_json(), "b": total_b.as_json(), "ratio": _ratios(total_a, total_b)},
        "ratio": "b / a",
        "legend": MACS_LEGEND + (f" {ATTENTION_LEGEND}" if "attention" in costs_a or "attention" in costs_b else ""),
    }


def render_side_by_side(data: dict) -> str:
    """The text form: a line per network, then a row per family and the totals."""
    total_a, total_b = data["total"]["a"], data["total"]["b"]
    body = []
    for row in [*data["families"], {"family": "total", **data["total"]}]:
        a, b, r = row["a"], row["b"], row["ratio"]
        body.append([
            row["family"], f"{a['layers']} / {b['layers']}",
            _share(a["params"], total_a["params"]), _share(b["params"], total_b["params"]), _times(r["params"]),
            _share(a["macs"], total_a["macs"]), _share(b["macs"], total_b["macs"]), _times(r["macs"]),
        ])
    header = ["family", "layers A / B", "params A", "params B", "B/A", "MACs A", "MACs B", "B/A"]
    table = format_table(header, body, right={1, 2, 3, 4, 5, 6, 7})
    note = textwrap.fill(f"B/A: B's count over A's. {data['legend']}", width=100)
    return f"A  {data['a']['label']}\nB  {data['b']['label']}\n\n{table}\n\n{note}\n"


def _describe(net: CompiledNetwork) -> dict:
    label = (f"{net.name}({ir.format_args(net.param_values)}) : {ir.format_shape(net.input_shape)} -> "
             f"{ir.format_shape(net.output_shape)}")
    return {"network": net.name, "spec": net.source_path, "parameters": net.param_values, "label": label,
            "input": json_shape(net.input_shape), "output": json_shape(net.output_shape),
            "params": json_dim(net.params), "macs": json_dim(net.macs)}


def _ratios(a: Costs, b: Costs) -> dict:
    return {"params": ratio(a.params, b.params), "macs": ratio(a.macs, b.macs)}


def _share(value, total) -> str:
    if not isinstance(value, int):
        return str(value)
    if not isinstance(total, int) or not total or not value:
        return f"{value:,}"
    return f"{value:,} ({100 * value / total:.1f}%)"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:#.3g}".rstrip(".") + "x"


# -- against a reference --------------------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One line of the mapping: a tensor of the spec's module, of the reference's, or of both."""

    ours: str | None
    our_shape: tuple[int, ...] | None
    theirs: str | None
    their_shape: tuple[int, ...] | None

    @property
    def status(self) -> str:
        if self.ours is None:
            return "only in the reference"
        if self.theirs is None:
            return "only in the spec"
        return "same shape" if self.our_shape == self.their_shape else "shape differs"

    def as_json(self) -> dict:
        return {"spec": self.ours, "spec_shape": _list(self.our_shape), "reference": self.theirs,
                "reference_shape": _list(self.their_shape), "status": self.status}


def map_tensors(ours: list[tuple[str, tuple[int, ...]]], theirs: list[tuple[str, tuple[int, ...]]]) -> list[Entry]:
    """Pair two state_dicts' tensors by shape and order: a diff of their shape sequences.

    Runs of equal shapes pair one to one; a run replaced by another of the same length pairs
    position by position (shapes differ); the rest is on one side only.
    """
    matcher = difflib.SequenceMatcher(None, [s for _, s in ours], [s for _, s in theirs], autojunk=False)
    entries: list[Entry] = []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        left, right = ours[i1:i2], theirs[j1:j2]
        paired = min(len(left), len(right)) if op in ("equal", "replace") else 0
        entries += [Entry(k, s, rk, rs) for (k, s), (rk, rs) in zip(left[:paired], right[:paired])]
        entries += [Entry(k, s, None, None) for k, s in left[paired:]]
        entries += [Entry(None, None, rk, rs) for rk, rs in right[paired:]]
    return entries


def load_reference(target: str, paths: list[Path], kwargs: dict, device: str = "meta"):
    """The ``torch.nn.Module`` that ``MODULE:FACTORY`` names, made with ``kwargs``, on ``device``.

    ``paths`` go first on ``sys.path`` (then the current folder). A factory that cannot run on the
    meta device is made on the CPU instead.
    """
    import torch

    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise UsageError(f"--reference takes MODULE:FACTORY, not '{target}'",
                         hint="for example --reference torchvision.models:vgg11 or --reference mymodels:Net")
    found = _import(module_name, [*paths, Path.cwd()])
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = [n for n in dir(found) if not n.startswith("_")]
            close = difflib.get_close_matches(part, names, n=1)
            raise UsageError(f"{module_name} has no '{attribute}'",
                             hint=f"did you mean '{close[0]}'?" if close else f"{module_name} defines {', '.join(names[:12])}")
        found = getattr(found, part)
    if isinstance(found, torch.nn.Module):
        if kwargs:
            raise UsageError(f"{target} is a module, not a factory: it takes no --reference-arg")
        return found
    if not callable(found):
        raise UsageError(f"{target} is a {type(found).__name__}, not a model class or factory")
    try:
        with torch.device(device):
            model = found(**kwargs)
    except Exception as err:  # the user's code: any failure is theirs to read
        if device == "meta":
            return load_reference(target, paths, kwargs, device="cpu")
        raise UsageError(f"{target}({_call_args(kwargs)}) failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{target}({_call_args(kwargs)}) returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def _import(name: str, paths: list[Path]):
    saved = list(sys.path)
    sys.path[:0] = [str(p) for p in paths]
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name and (name == err.name or name.startswith(err.name + ".")):
            raise UsageError(f"no module named '{name}'",
                             hint="pass the folder that holds it with --reference-path DIR") from None
        raise UsageError(f"importing {name} failed: {err}") from None
    except Exception as err:  # a module that fails while it loads: the user's code
        raise UsageError(f"importing {name} failed: {type(err).__name__}: {err}") from None
    finally:
        sys.path[:] = saved


def against_reference(net: CompiledNetwork, target: str, paths: list[Path], kwargs: dict,
                      load_weights: bool = False) -> dict:
    """The spec against the reference: counts, output shapes, the tensor mapping and, with
    ``load_weights``, the outputs with the reference's weights copied in. The JSON form."""
    import torch

    net.require_concrete("comparing with a reference")
    # Counting and shapes need no memory (the meta device); copying weights needs real ones, built once.
    reference = load_reference(target, paths, kwargs, device="cpu" if load_weights else "meta")
    with torch.device("meta"):
        ours = net.build()
    our_tensors = [(k, tuple(v.shape)) for k, v in ours.state_dict().items()]
    their_params = sum(p.numel() for p in reference.parameters())
    try:
        their_output, order, unused = _run_reference(reference, target, net.input_shape)
    except UsageError:
        # Some models cannot run on the meta device (data-dependent code, say): try a real tensor.
        if next((t.is_meta for t in reference.state_dict().values()), False):
            reference = load_reference(target, paths, kwargs, "cpu")
            their_output, order, unused = _run_reference(reference, target, net.input_shape)
        else:
            raise
    their_state = reference.state_dict()
    their_tensors = [(k, tuple(their_state[k].shape)) for k in order]
    entries = map_tensors(our_tensors, their_tensors)
    result = {
        "spec": _describe(net),
        "reference": {"target": target, "arguments": kwargs, "params": their_params, "output": list(their_output)},
        "params": {"spec": json_dim(net.params), "reference": their_params, "same": net.params == their_params},
        "output": {"spec": json_shape(net.output_shape), "reference": list(their_output),
                   "same": tuple(net.output_shape) == their_output},
        "tensors": {"spec": len(our_tensors), "reference": len(their_tensors)},
        "unused": [k for k in order if k in unused],
        "mapping": [entry.as_json() for entry in entries],
        "differences": [entry.as_json() for entry in entries if entry.status != "same shape"],
    }
    if load_weights:
        result["outputs"] = _compare_outputs(net, reference, entries)
    return result


def _run_reference(reference, target: str, input_shape: tuple[int, ...]) -> tuple[tuple[int, ...], list[str], set[str]]:
    """Run the reference once on a zero batch: its output shape; its state_dict's names in the order its
    forward first uses the tensors of the modules that hold them (the order a spec is written in, whatever order the
    modules were registered in: the book's Residual registers conv1, conv2, conv3, bn1, bn2; torchvision's ViT holds
    its class token in the model itself and uses it after the patch convolution), each module's tensors together in
    its own order; and the names of tensors that the forward never used, which come last, in registration order."""
    import torch
    from torch.overrides import TorchFunctionMode
    from torch.utils._pytree import tree_leaves

    state = list(reference.state_dict())
    owners: dict[int, torch.nn.Module] = {}
    for module in reference.modules():
        for _, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
            owners.setdefault(id(tensor), module)
    used: dict[int, torch.nn.Module] = {}  # id of a module -> the module, in the order its tensors are first used

    class Uses(TorchFunctionMode):
        """Records, for every torch function the forward calls, the modules that hold the tensors it reads."""

        def __torch_function__(self, func, types, args=(), kwargs=None):
            for leaf in tree_leaves((args, kwargs or {})):
                owner = owners.get(id(leaf)) if isinstance(leaf, torch.Tensor) else None
                if owner is not None:
                    used.setdefault(id(owner), owner)
            return func(*args, **(kwargs or {}))

    device = next((t.device for t in reference.state_dict().values()), torch.device("cpu"))
    try:
        with torch.no_grad(), Uses():
            output = reference.eval()(torch.zeros(1, *input_shape, device=device))
    except Exception as err:  # the user's model refusing the spec's input
        raise UsageError(f"the reference fails on a 1x{ir.format_shape(input_shape)} input: {type(err).__name__}: {err}",
                         hint="make both take the same input: --param or --input for the spec, "
                              "--reference-arg for the reference") from None
    if not isinstance(output, torch.Tensor):
        raise UsageError(f"{target} returns a {type(output).__name__}, not one tensor",
                         hint="wrap it in a factory that returns the model's main output")
    prefixes: dict[int, list[str]] = {}
    for prefix, module in reference.named_modules(remove_duplicate=False):
        prefixes.setdefault(id(module), []).append(prefix + "." if prefix else "")
    in_state = set(state)
    order: dict[str, None] = {}
    for module in used.values():
        own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
        for prefix in prefixes.get(id(module), []):
            order |= {prefix + name: None for name, _ in own if prefix + name in in_state}
    unused = {name for name in state if name not in order}
    return tuple(output.shape[1:]), [*order, *(name for name in state if name in unused)], unused


def _compare_outputs(net: CompiledNetwork, reference, entries: list[Entry]) -> dict:
    """Copy the reference's tensors into the spec's module as ``entries`` pair them, then run both on one batch."""
    import torch

    mismatch = next((e for e in entries if e.status != "same shape"), None)
    if mismatch is not None:
        where = mismatch.ours or mismatch.theirs
        raise UsageError(
            f"cannot copy the reference's weights: {mismatch.status} at {where} "
            f"({_shape(mismatch.our_shape)} in the spec, {_shape(mismatch.their_shape)} in the reference)",
            hint="every tensor must match by shape and order; see the mapping without --load-weights")
    ours = net.build().eval()  # the reference is in eval mode since _run_reference
    theirs = reference.state_dict()
    ours.load_state_dict({entry.ours: theirs[entry.theirs] for entry in entries}, strict=True)
    x = torch.randn(2, *net.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x), reference(x)
    difference = (a - b).abs().max().item()
    return {"batch": 2, "max_abs_difference": difference, "equal": bool(torch.equal(a, b)),
            "agree": bool(torch.allclose(a, b, rtol=RTOL, atol=ATOL)), "rtol": RTOL, "atol": ATOL}


def render_reference(data: dict) -> str:
    """The text form of ``against_reference``."""
    spec, ref = data["spec"], data["reference"]
    call = f"{ref['target']}({_call_args(ref['arguments'])})"

    def verdict(same: bool) -> str:
        return "same" if same else "DIFFERENT"

    params, output = data["params"], data["output"]
    summary = format_table(
        ["", "spec", "reference", "check"],
        [["parameters", _count(params["spec"]), f"{params['reference']:,}", verdict(params["same"])],
         ["output", _shape(output["spec"]), _shape(output["reference"]), verdict(output["same"])],
         ["tensors", str(data["tensors"]["spec"]), str(data["tensors"]["reference"]),
          verdict(data["tensors"]["spec"] == data["tensors"]["reference"])]],
        right={1, 2},
    )
    mapping = format_table(
        ["spec tensor", "shape", "reference tensor", "shape", "difference"],
        [[m["spec"] or "-", _shape(m["spec_shape"]), m["reference"] or "-", _shape(m["reference_shape"]),
          "" if m["status"] == "same shape" else m["status"]] for m in data["mapping"]],
        right={1, 3},
    )
    count = len(data["differences"])
    lines = [f"spec       {spec['label']}", f"reference  {call}", "", summary, "",
             "state_dict, matched by shape and by the order in which the reference's forward uses its modules:",
             mapping, ""]
    if data["unused"]:
        lines += [f"note: {len(data['unused'])} reference tensors belong to modules its forward never called; "
                  "they come last, in the order they were registered", ""]
    lines.append("differences: none" if not count else f"differences: {count}")
    outputs = data.get("outputs")
    if outputs is not None:
        agreement = "equal" if outputs["equal"] else (
            f"agree within rtol={outputs['rtol']:g}, atol={outputs['atol']:g}" if outputs["agree"] else "DIFFER")
        lines.append(f"outputs with the reference's weights copied in (a batch of {outputs['batch']}): "
                     f"max |difference| {outputs['max_abs_difference']:.3g}, {agreement}")
    return "\n".join(lines) + "\n"


def _call_args(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _count(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _shape(shape) -> str:
    if shape is None:
        return "-"
    return "x".join(str(d) for d in shape) if shape else "scalar"


def _list(shape):
    return None if shape is None else list(shape)
