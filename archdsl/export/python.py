"""A network as a standalone PyTorch source file: one ``nn.Module`` class per block, no archdsl import.

The classes are written from the syntax tree, so they keep the spec's structure: a block's
parameters are its class's constructor arguments, ``repeat`` and ``for`` are ``for`` loops and ``if``
an ``if``. From ``block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2`` comes::

    class Vgg(nn.Sequential):
        def __init__(self, n, c, *, in_shape):
            super().__init__()
            channels, height, width = in_shape
            for i in range(n):
                self.add_module(f"conv_{i}", nn.Conv2d(channels, c, 3, padding=1))
                self.add_module(f"relu_{i}", nn.ReLU())
                channels = c
            self.maxpool_0 = nn.MaxPool2d(2)
            self.out_shape = (channels, height // 2, width // 2)

Every class takes the shape entering it (``in_shape``, batch left out) and records the shape it
gives (``out_shape``): that is what a block's ``in.c`` reads, and how each layer learns its input
size without Lazy modules. Submodules are named as archdsl's torch backend names them
(``vgg_0.conv_1``), so the two modules have the same ``state_dict`` keys.

The network becomes the last class, its parameters constructor arguments defaulting to the values
it was exported with. Sizes that are known are written as numbers; the rest as the arithmetic that
computes them (``out_size`` is PyTorch's rule for a window).

Each layer kind's constructor call is in ``python_layers.py``; the last touches on the text (unread
sizes left out, long lines broken) in ``python_text.py``; expressions are built by ``pyexpr.py``.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import keyword
import re
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field

from archdsl import ir
from archdsl.compiled import CompiledNetwork
from archdsl.export import pyexpr
from archdsl.export.inputs import InputSpec
from archdsl.export.pyexpr import Py
from archdsl.export.python_layers import EMITTERS, HELPERS, Layout, RankChange, Shape, Unsupported, helper_sources
from archdsl.export.python_text import HELPER_FUNCTIONS, JOIN, JOIN_CLASSES, Assign, finish, indent_doc, wrap_line
from archdsl.layers import SAME, LayerKind, lookup
from archdsl.program import Program
from archdsl.resolve import choose_network, match_layer_args, unstated_layer_args
from archdsl.source import printable_path
from archdsl.values import FUNCTIONS

# Names the generated code uses besides the classes: never taken by a parameter or a local.
_RESERVED = {
    "self", "in_shape", "torch", "nn", "math", "Join", "Concat", "Add", "Mul", "out_size", "pair", "make_divisible",
    "super", "range", "enumerate", "min", "max", "round", "pow", "len", "sum", "tuple", "float",
    "True", "False", "None", "l", "O", "I",  # the last three: ambiguous names (ruff E741)
    *HELPERS,  # archdsl's own modules (LayerNorm2d, ...), defined in the file where used
}  # fmt: skip

_DIM_NAMES = {Layout(1): ("features",), Layout(3): ("channels", "height", "width"),
              Layout(2, tokens=True): ("tokens", "features"), Layout(3, tokens=True): ("height", "width", "features")}


def python_source(net: CompiledNetwork, weights_file: str | None = None, inputs: InputSpec | None = None) -> str:
    """The source of a module that builds ``net`` as plain PyTorch; ``weights_file`` is named in its
    docstring as the safetensors file to load, and ``inputs`` (a trained run's) is stated there, its
    normalisation the network's first module when it is built in.

    >>> print(python_source(archdsl.load("specs/lenet.arch")))   # doctest: +SKIP
    """
    return _File(net, weights_file, inputs).render()


def network_class_name(net: CompiledNetwork) -> str:
    """The name of the network's class in ``python_source(net)``: ``Resnet18`` for ``resnet18``."""
    return _class_name(net.name, "", set())  # the file names the network's class first


def _class_name(name: str, suffix: str, taken: set[str]) -> str:
    """``conv_block`` -> ``ConvBlock``, recorded in ``taken``; on a clash, ``suffix`` and then a number are added."""
    base = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) or "Block"
    candidates = itertools.chain([base, base + suffix], (f"{base}{suffix}{n}" for n in itertools.count(2)))
    for candidate in candidates:
        if candidate not in taken and candidate not in _RESERVED:
            taken.add(candidate)
            return candidate
    raise AssertionError("unreachable")


# -- where the writer is ---------------------------------------------------------------------------


@dataclass
class _Scope:
    """Where modules go (``self`` or a branch's ``nn.Sequential``) and how many of each name it holds."""

    container: str
    counts: dict[str, Py] = field(default_factory=dict)
    # In the network's own class, outside loops and undecided ifs: the IR path of the container
    # (``concat_0.b1.``), where the resolved graph says what each node gives.
    prefix: str | None = None

    def copy(self) -> _Scope:
        """The same container and counts so far, outside what the resolved graph can tell (prefix None)."""
        return _Scope(self.container, dict(self.counts))


@dataclass(frozen=True)
class _ClassInfo:
    name: str
    params: dict[str, str]  # archdsl parameter -> Python argument
    out_layout: Layout


# -- the file -------------------------------------------------------------------------------------


class _File:
    """The file being written: a class per block and input layout (rank, and whether tokens), as calls reach
    them, and the network last."""

    def __init__(self, net: CompiledNetwork, weights_file: str | None = None, inputs: InputSpec | None = None) -> None:
        self.net = net
        self.weights_file = weights_file
        self.inputs = inputs if inputs is not None and inputs.mean is not None else None  # a trained run's, or none
        self.program = net.program
        self.definition = choose_network(net.program, net.name)
        self.classes: dict[tuple[str, int], _ClassInfo] = {}
        self.in_progress: set[tuple[str, int]] = set()
        self.sources: list[str] = []
        self.joins: set[str] = set()  # the joins used (concat, add, mul): their classes are defined in the file
        self.class_names: set[str] = set()
        self.network_class = _class_name(net.name, "", self.class_names)
        self.base_names = {name: _class_name(name, "Block", self.class_names) for name in self.program.blocks}

    @functools.cached_property
    def nodes(self) -> dict[str, ir.Resolved]:
        """The resolved graph by path, for what the writer cannot tell from the syntax (only ``render`` needs it)."""
        return {node.path: node for node in ir.walk(self.net.ir.body)}

    @functools.cached_property
    def depths(self) -> dict[str, dict[str, int]]:
        """For each block the network reaches, how deep the lists its parameters may hold nest (0: numbers only)."""
        return _list_depths(self.program, self.definition, self.net.param_values)

    def block_class(self, block: ir.BlockDef, layout: Layout, call: ir.Call) -> _ClassInfo:
        key = (block.name, layout)
        if key in self.classes:
            return self.classes[key]
        if key in self.in_progress:
            raise Unsupported(f"block '{block.name}' calls itself", call.name_span)
        self.in_progress.add(key)
        # A block used on images and on vectors (or tokens) gets a class per layout: the first keeps the plain name.
        other_ranks = [k for k in (*self.classes, *self.in_progress) if k[0] == block.name and k != key]
        suffix = f"tokens{layout.rank}d" if layout.tokens else f"{layout.rank}d"
        name = _class_name(f"{block.name}_{suffix}", "", self.class_names) if other_ranks else self.base_names[block.name]
        writer = _Writer(self, block.params, in_layout=layout, depths=self.depths.get(block.name, {}))
        end = writer.body(block.body)
        info = _ClassInfo(name, writer.param_names, end.layout)
        self.sources.append(writer.render_class(name, _docstring(block), end))
        self.classes[key] = info
        self.in_progress.discard(key)
        return info

    def render(self) -> str:
        depths = {name: pyexpr.nesting(value) for name, value in self.net.param_values.items()}
        tokens = isinstance(self.net.input_shape, ir.Tokens)
        writer = _Writer(self, self.definition.params, Layout(len(self.net.input_shape), tokens), self.sizes, depths)
        dims = self._input_dims(writer)
        end = writer.body(self.definition.body, Shape(len(dims), dims=tuple(dims), tokens=tokens), in_dims=dims)
        if self.normalizes:
            writer.lines.insert(0, "        " + self.inputs.constructor())  # the network's first module
        network = writer.render_class(self.network_class, self._network_doc(), end, defaults=self.net.param_values)
        modules = helper_sources((*self.sources, network))
        parts = [self._header(uses_torch=any("torch." in source for source in modules),
                              uses_math=any("math." in source for source in (*self.sources, network)))]
        classes = (*self.sources, network)
        for function, text in HELPER_FUNCTIONS.items():
            if any(f"{function}(" in source for source in classes):  # some uses may be dropped as unread
                parts.append(text)
        joins = [text for op, (_, text) in JOIN_CLASSES.items() if op in self.joins]
        parts += [JOIN, *joins] if joins else []
        parts += [*modules, *classes]
        return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"

    @property
    def normalizes(self) -> bool:
        return self.inputs is not None and self.inputs.built_in

    @property
    def sizes(self) -> tuple[str, ...]:
        """The names of the input's symbolic sizes (``H``, ``W`` of ``1xHxW``): the network class's keyword arguments."""
        return tuple(dict.fromkeys(str(d) for d in self.net.input_shape if not isinstance(d, int)))

    def _input_dims(self, writer: _Writer) -> list[Py]:
        """The declared input sizes in the network's parameters, or the ones --input gave instead."""
        bound = writer.env
        writer.env = {k: pyexpr.const(v) for k, v in self.net.param_values.items()}
        writer.env |= {name: pyexpr.name(writer.param_names[name]) for name in self.sizes}
        try:
            declared = [writer.translate(e) for e in self.definition.input]
        except Unsupported:  # [1, H, W] given concrete sizes with --input
            declared = []
        writer.env = bound
        given = [pyexpr.const(d) if isinstance(d, int) else pyexpr.name(writer.param_names[str(d)])
                 for d in self.net.input_shape]
        if [d.src for d in declared] != [d.src for d in given]:
            return given
        return [writer.translate(e) for e in self.definition.input]

    def _header(self, uses_torch: bool, uses_math: bool) -> str:
        net = self.net
        sizes = ", ".join(f"{name}=..." for name in self.sizes)
        usage = [f"    model = {self.network_class}({sizes})"]
        if self.weights_file:
            usage.append(f'    safetensors.torch.load_model(model, "{self.weights_file}")  # the weights beside this file')
        sizes = ", ".join(str(d) for d in net.input_shape)
        if self.normalizes:
            usage.append(f"    logits = model(torch.rand(8, {sizes}))  # images in [0, 1], as ToTensor makes them")
        else:
            usage.append(f"    logits = model(torch.randn(8, {sizes}))")
        imports = "import torch\nfrom torch import nn" if uses_torch or "concat" in self.joins else "from torch import nn"
        imports = f"import math\n\n{imports}" if uses_math else imports
        return "\n".join([
            f'"""{net.name} in plain PyTorch, written by `archdsl export` from {printable_path(net.source_path or "a spec")}.',
            "",
            *usage,
            "",
            *self._input_paragraph(),
            "Submodules are named as archdsl names them, so the state_dict of archdsl's module (or the",
            "weights of `archdsl train`) loads here with load_state_dict(strict=True).",
            '"""',
            "",
            imports,
        ])

    def _network_doc(self) -> str:
        net = self.net
        bound = ", ".join(f"{k}={repr(v)}" for k, v in net.param_values.items())
        shape, out = ir.format_shape(net.input_shape), ir.format_shape(net.output_shape)
        params = f"{net.params:,}" if isinstance(net.params, int) else str(net.params)
        span = self.definition.span
        lead = _comment_above(self.definition) or _file_comment(self.definition)
        text = f"archdsl network {net.name} ({span.file}:{span.line}): {shape} -> {out}, {params} parameters"
        text += f",\nexported with {bound} (the constructor's defaults)." if bound else "."
        if self.inputs is not None:
            text += "\n\n" + "\n".join(self._input_paragraph()).strip()
        return f"{lead}\n\n{text}" if lead else text

    def _input_paragraph(self) -> list[str]:
        """What the trained network takes, as docstring lines ending in a blank one; none without a run."""
        if self.inputs is None:
            return []
        return [*textwrap.wrap(f"Input: {self.inputs.describe()}.", width=100), ""]


# -- one class ------------------------------------------------------------------------------------


class _Writer:
    """Writes the constructor of one class: its statements, its locals, the shape as it goes."""

    def __init__(self, file: _File, params: tuple[ir.Param, ...], in_layout: Layout, sizes: tuple[str, ...] = (),
                 depths: dict[str, int] | None = None) -> None:
        self.file = file
        self.params = params
        self.in_layout = in_layout
        taken = _RESERVED | file.class_names
        self.param_names: dict[str, str] = {}
        for name in (*(param.name for param in params), *sizes):
            python = name
            while keyword.iskeyword(python) or python in taken or python in self.param_names.values():
                python += "_"
            self.param_names[name] = python
        self.sizes = [self.param_names[name] for name in sizes]  # symbolic input sizes: keyword arguments
        # A parameter that only ever holds a number says so (depth 0): a stride s is written s, not pair(s)[0].
        depths = {**(depths or {}), **{name: 0 for name in sizes}}
        self.env = {name: pyexpr.name(python, depths.get(name)) for name, python in self.param_names.items()}
        self.locals: dict[str, str] = {}  # local name -> what it holds ("shape", "branch", "index", "block")
        self.pinned: list[frozenset[str]] = []  # names that earlier shapes still read: not to be reassigned
        self.indices: list[str] = []  # the loop variables in scope
        self.lines: list[str] = []
        self.depth = 2
        self.in_dims: list[Py] = [pyexpr.index(pyexpr.name("in_shape", 1), i) for i in range(in_layout.rank)]

    # -- output -----------------------------------------------------------------------------------

    def emit(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def capture(self, generate: Callable[[], object]) -> tuple[list[str], object]:
        """Run ``generate`` one indentation level deeper, returning the lines it wrote and its result."""
        saved = self.lines
        self.lines = []
        self.depth += 1
        try:
            result = generate()
            return self.lines, result
        finally:
            self.lines = saved
            self.depth -= 1

    def render_class(self, name: str, doc: str, end: Shape, defaults: dict[str, object] | None = None) -> str:
        """The network's class (``defaults``: its bound parameters) or, without them, a block's class,
        which also takes the shape coming in (keyword ``in_shape``)."""
        signature = ["self"]
        fills: list[str] = []
        if defaults is not None:
            signature += [f"{self.param_names[k]}={v!r}" for k, v in defaults.items()]
            signature += ["*", *self.sizes] if self.sizes else []
        else:
            signature += [*self._block_signature(fills), "*", "in_shape"]
        body = finish(["        super().__init__()", *fills, *self.lines, f"        self.out_shape = {end.expr()}"])
        body = [wrap_line(line) for line in body]
        return "\n".join([
            f"class {name}(nn.Sequential):",
            indent_doc(doc),
            "",
            wrap_line(f"    def __init__({', '.join(signature)}):"),
            *body,
        ])

    def _block_signature(self, fills: list[str]) -> list[str]:
        """Parameters with literal defaults keep them; others default to None and are computed first."""
        signature = []
        defaulted = False
        for param in self.params:
            python = self.param_names[param.name]
            literal = _literal_default(param.default)
            if isinstance(param.default, ir.ListExpr) and self.translate(param.default).known:
                literal = repr(self.translate(param.default).value)  # a tuple: a default that never changes
            if literal is not None:
                signature.append(f"{python}={literal}")
                defaulted = True
            elif param.default is not None:
                signature.append(f"{python}=None")
                value = self.translate(param.default)
                fills += [f"        if {python} is None:", f"            {python} = {value}"]
                defaulted = True
            elif defaulted:  # Python wants defaults last; archdsl does not
                signature.append(f"{python}=None")
                fills += [f"        if {python} is None:",
                          f'            raise TypeError("{param.name} is required")']
            else:
                signature.append(python)
        return signature

    # -- names ------------------------------------------------------------------------------------

    def local(self, preferred: str, kind: str, avoid: frozenset[str] = frozenset()) -> str:
        """A local variable for ``kind``: ``preferred`` unless something still needs that name."""
        busy = set(avoid).union(*self.pinned) if self.pinned else set(avoid)
        candidate, number = preferred, 2
        while (candidate in busy or keyword.iskeyword(candidate) or candidate in _RESERVED
               or candidate in self.file.class_names or candidate in self.param_names.values()
               or self.locals.get(candidate, kind) != kind):
            candidate = f"{preferred}_{number}" if preferred[-1].isdigit() else f"{preferred}{number}"
            number += 1
        self.locals[candidate] = kind
        return candidate

    def fresh(self, preferred: str, kind: str) -> str:
        """A local for ``kind`` that no other statement of the class uses: ``preferred``, ``preferred2``, ..."""
        return self.local(preferred, kind, frozenset(n for n, k in self.locals.items() if k == kind))

    def pin(self, *held: Shape | str) -> None:
        """Keep the names that ``held`` reads (or a local's own name) from reuse until unpinned."""
        names: set[str] = set()
        for thing in held:
            names |= {thing} if isinstance(thing, str) else thing.names
        self.pinned.append(frozenset(names))

    # -- expressions ------------------------------------------------------------------------------

    def translate(self, expr: ir.Expr, depth: int = 0) -> Py:
        """An archdsl expression as Python, in this class's names."""
        if depth > 200:
            raise Unsupported("expression nested too deeply to export", expr.span)
        if isinstance(expr, ir.Number):
            return pyexpr.const(expr.value)
        if isinstance(expr, ir.Var):
            if expr.name in self.env:
                return self.env[expr.name]
            if expr.name in ("true", "false"):
                return pyexpr.const(expr.name == "true")
            raise Unsupported(f"unknown name '{expr.name}'", expr.span)
        if isinstance(expr, ir.InputDim):
            position = {"c": 0, "h": 1, "w": 2}.get(expr.dim)
            if self.in_layout.tokens:  # tokens: in.c is each token's features, in.h and in.w their grid's
                position = {"c": len(self.in_dims) - 1, "h": 0, "w": 1}.get(expr.dim) if len(self.in_dims) == 3 \
                    else {"c": 1}.get(expr.dim)
            if position is None or position >= len(self.in_dims):
                raise Unsupported(f"in.{expr.dim} is undefined here", expr.span)
            return self.in_dims[position]
        if isinstance(expr, ir.UnOp):
            return pyexpr.unary(expr.op, self.translate(expr.operand, depth + 1))
        if isinstance(expr, ir.ListExpr):  # a list is a tuple: a window (1, 7) as torch takes it
            return pyexpr.tuple_of([self.translate(item, depth + 1) for item in expr.items])
        if isinstance(expr, ir.Index):
            return pyexpr.index(self.translate(expr.value, depth + 1), self.translate(expr.index, depth + 1))
        if isinstance(expr, ir.ListFor):
            over = self.translate(expr.values, depth + 1)
            if over.known and isinstance(over.value, tuple):
                items = []
                for value in over.value:
                    with self.binding(expr.name, pyexpr.const(value)):
                        items.append(self.translate(expr.item, depth + 1))
                if all(item.known for item in items):
                    return pyexpr.tuple_of(items)
            var = self.local(expr.name, "index", frozenset(self.indices))
            with self.binding(expr.name, pyexpr.item_of(over, var)):
                return pyexpr.tuple_for(self.translate(expr.item, depth + 1), var, over)
        if isinstance(expr, ir.SliceExpr):
            sides = [None if e is None else self.translate(e, depth + 1) for e in (expr.start, expr.end)]
            return pyexpr.sliced(self.translate(expr.value, depth + 1), *sides)
        if isinstance(expr, ir.CondExpr):  # only the arm chosen is evaluated, in Python as in archdsl
            test = self.translate(expr.test, depth + 1)
            if test.known:
                return self.translate(expr.then if test.value else expr.otherwise, depth + 1)
            then, otherwise = self.translate(expr.then, depth + 1), self.translate(expr.otherwise, depth + 1)
            return pyexpr.conditional(test, then, otherwise)
        if isinstance(expr, ir.Func):
            if expr.name not in FUNCTIONS:
                raise Unsupported(f"unknown function '{expr.name}'", expr.span)
            return pyexpr.function(expr.name, [self.translate(a, depth + 1) for a in expr.args])
        left, right = self.translate(expr.left, depth + 1), self.translate(expr.right, depth + 1)
        if expr.op in ("and", "or"):
            return pyexpr.logical(expr.op, left, right)
        if expr.op in ("==", "!="):  # lists compare equal as archdsl's lists do, a range(...) among them
            left, right = pyexpr.listed(left), pyexpr.listed(right)
        return pyexpr.binary(expr.op, left, right)

    # -- sequences --------------------------------------------------------------------------------

    def body(self, items: tuple[ir.Item, ...], start: Shape | None = None, in_dims: list[Py] | None = None) -> Shape:
        """Write a class body; blocks start from ``in_shape``, the network from its input sizes."""
        if in_dims is not None:
            self.in_dims = in_dims
        shape = start if start is not None else \
            Shape(self.in_layout.rank, whole=pyexpr.name("in_shape", 1), tokens=self.in_layout.tokens)
        return self.items(items, shape, _Scope("self", prefix="" if in_dims is not None else None))

    def items(self, items: tuple[ir.Item, ...], shape: Shape, scope: _Scope, needed: bool = True) -> Shape:
        """Write a sequence; ``needed`` is False where nothing reads the shape it ends with."""
        for position, item in enumerate(items):
            shape = self.item(item, shape, scope, needed or position < len(items) - 1)
        return shape

    def item(self, item: ir.Item, shape: Shape, scope: _Scope, needed: bool = True) -> Shape:
        if isinstance(item, ir.Call):
            block = self.file.program.blocks.get(item.name)
            if block is not None:
                return self.block_call(item, block, shape, scope)
            return self.layer(item, shape, scope)
        if isinstance(item, ir.Group):
            return self.items(item.items, shape, scope, needed)
        if isinstance(item, ir.Repeat):
            return self.repeat(item, shape, scope)
        if isinstance(item, ir.Loop):
            return self.loop(item, shape, scope)
        if isinstance(item, ir.Cond):
            return self.cond(item, shape, scope, needed)
        return self.join(item, shape, scope)

    def place(self, scope: _Scope, base: str, module: str, block: bool = False) -> str:
        """Add ``module`` to the scope's container under archdsl's name for it; where it can be read back."""
        index = scope.counts.get(base, pyexpr.const(0))
        scope.counts[base] = pyexpr.count_sum(index, pyexpr.const(1))
        if index.known:
            path = f"{scope.container}.{base}_{index.value}"
            self.emit(f"{path} = {module}")
            return path
        holder = module
        if block:
            holder = self.local(base, "block")
            self.emit(f"{holder} = {module}")
        self.emit(f'{scope.container}.add_module(f"{base}_{{{index}}}", {holder})')
        return holder

    # -- layers and blocks ------------------------------------------------------------------------

    def layer(self, call: ir.Call, shape: Shape, scope: _Scope) -> Shape:
        found = lookup(call.name)
        if found is None:
            raise Unsupported(f"unknown layer or block '{call.name}'", call.name_span)
        kind, preset = found
        emitter = EMITTERS[kind.key]
        if emitter.needs_dims:
            shape = self.unpack(shape)
        args = self.bind_layer(kind, preset, call)
        module, out = emitter.write(kind, args, shape, call)
        self.place(scope, kind.key, module)
        return out

    def bind_layer(self, kind: LayerKind, preset: dict, call: ir.Call) -> dict[str, object]:
        """The layer's arguments as Python expressions, matched to the kind's as ``resolve`` matches them."""
        values: dict[str, object] = {}
        for spec, arg in match_layer_args(kind, preset, call, self.env, self.file.program.blocks):
            values[spec.name] = _coerce(spec.type, self.translate(arg.value))
        for name, value in unstated_layer_args(kind, preset, values, call).items():
            values[name] = value if value is SAME or value is None else pyexpr.const(value)
        return values

    def block_call(self, call: ir.Call, block: ir.BlockDef, shape: Shape, scope: _Scope) -> Shape:
        info = self.file.block_class(block, shape.layout, call)
        args, known = [], shape.expr().known
        for arg in call.args:
            value = self.translate(arg.value)
            known = known and value.known
            if arg.name is None:
                args.append(value.src)
            elif arg.name in info.params:
                args.append(f"{info.params[arg.name]}={value}")
            else:
                raise Unsupported(f"block {block.name} has no parameter '{arg.name}'", arg.span)
        args.append(f"in_shape={shape.expr()}")
        index = scope.counts.get(block.name, pyexpr.const(0))
        holder = self.place(scope, block.name, f"{info.name}({', '.join(args)})", block=True)
        if known and scope.prefix is not None and index.known:
            # Numbers in, numbers out: a block's output depends on its arguments and input only, so
            # the resolved graph's shape holds whatever the network's own parameters are.
            node = self.file.nodes.get(f"{scope.prefix}{block.name}_{index.value}")
            if isinstance(node, ir.Block):
                return Shape(len(node.out_shape), dims=tuple(pyexpr.const(d) for d in node.out_shape),
                             tokens=isinstance(node.out_shape, ir.Tokens))
        root = holder.split(".")[0]
        return Shape(info.out_layout.rank, whole=pyexpr.attribute(f"{holder}.out_shape", root), tokens=info.out_layout.tokens)

    # -- shapes -----------------------------------------------------------------------------------

    def unpack(self, shape: Shape) -> Shape:
        """The shape with one expression per size, unpacking a tuple into locals where needed."""
        if shape.dims is not None:
            return shape
        names = tuple(self.local(n, "shape") for n in _dim_names(shape.layout))
        self.set(names, whole=shape.whole)
        return shape.of(dims=tuple(pyexpr.name(n) for n in names))

    def set(self, targets: tuple[str, ...], values: tuple[Py, ...] = (), whole: Py | None = None) -> None:
        """Assign sizes to locals; written once the class is complete, leaving out what nothing reads."""
        if targets:
            self.lines.append(Assign("    " * self.depth, targets, values, whole))

    def assignable(self, shape: Shape, needs_dims: bool) -> Shape:
        """The shape held in locals that a loop may reassign: one per size, or one tuple."""
        if needs_dims:
            shape = self.unpack(shape)
            targets, values = [], []
            names = []
            for preferred, dim in zip(_dim_names(shape.layout), shape.dims):
                if self.locals.get(dim.src) == "shape" and not any(dim.src in p for p in self.pinned) \
                        and dim.src not in names:
                    names.append(dim.src)
                    continue
                target = self.local(preferred, "shape", frozenset(names) | shape.names)
                names.append(target)
                targets.append(target)
                values.append(dim)
            self.set(tuple(targets), tuple(values))
            return shape.of(dims=tuple(pyexpr.name(n) for n in names))
        if shape.whole is not None and self.locals.get(shape.whole.src) == "shape" \
                and not any(shape.whole.src in p for p in self.pinned):
            return shape
        target = self.local("shape", "shape", shape.names)
        self.set((target,), (shape.expr(),))
        return shape.of(whole=pyexpr.name(target))

    def assign(self, target: Shape, value: Shape, where: ir.Node) -> None:
        """Statements that make the locals of ``target`` hold ``value``."""
        if value.layout != target.layout:
            raise RankChange("the rank of the shape changes here (an image becomes a vector, say) "
                              "in a way that depends on parameters", where.span)
        if target.whole is not None:
            if value.expr().src != target.whole.src:
                self.set((target.whole.src,), (value.expr(),))
            return
        if value.dims is None:
            self.set(tuple(d.src for d in target.dims), whole=value.whole)
            return
        changed = [(t.src, v) for t, v in zip(target.dims, value.dims) if t.src != v.src]
        self.set(tuple(n for n, _ in changed), tuple(v for _, v in changed))

    # -- repeat, for, if and joins ----------------------------------------------------------------

    def repeat(self, item: ir.Repeat, shape: Shape, scope: _Scope) -> Shape:
        count = self.translate(item.count)
        if count.known and (count.value == 1 or count.value <= 0):
            return self.item(item.item, shape, scope) if count.value == 1 else shape
        increments = self.count_names(item.item)
        loop_var = "_"
        if not all(inc.is_(0) for inc in increments.values()):
            loop_var = self.local("i" if not self.indices else "j", "index", frozenset(self.indices))
        written = len(self.lines)
        state = self.assignable(shape, self.needs_dims(item.item))
        inner = scope.copy()
        saved_counts = dict(scope.counts)
        for base, inc in increments.items():
            start = scope.counts.get(base, pyexpr.const(0))
            inner.counts[base] = pyexpr.count_sum(start, pyexpr.binary("*", inc, pyexpr.name(loop_var)))
            scope.counts[base] = pyexpr.count_sum(start, pyexpr.binary("*", inc, count))

        def loop_body():
            end = self.item(item.item, state, inner)
            self.assign(state, end, item)

        self.indices.append(loop_var)
        pinned = len(self.pinned)
        try:
            lines, _ = self.capture(loop_body)
        except RankChange:
            if not count.known:
                raise
            # A body that turns an image into a vector (``repeat 2 <...; flatten>``) cannot be one
            # loop; with a known count it is written out once per repetition instead.
            del self.pinned[pinned:]
            del self.lines[written:]
            scope.counts = saved_counts
            for _ in range(count.value):
                shape = self.item(item.item, shape, scope)
            return shape
        finally:
            self.indices.pop()
        self.emit(f"for {loop_var} in range({count}):")
        self.lines += lines or ["    " * (self.depth + 1) + "pass"]
        return state

    def loop(self, item: ir.Loop, shape: Shape, scope: _Scope) -> Shape:
        """``for NAME in LIST ITEM`` as a Python ``for``; its modules are named on in the enclosing scope.

        A name whose count per iteration is the same each time is numbered from the iteration's index
        (``f"stage_{i}"``); one whose count depends on the value (a repeat of ``st[4]``) from a running count
        (``n_inverted``), which the loop advances at the end of each iteration."""
        over = self.translate(item.values)
        if over.known and not isinstance(over.value, tuple):
            raise Unsupported(f"for loops over a list, not {over}", item.values.span)
        if over.known and len(over.value) <= 1:
            return self.unrolled(item, over.value, shape, scope)
        var = self.local(item.name, "index", frozenset(self.indices))
        with self.binding(item.name, pyexpr.item_of(over, var)):
            increments = {base: inc for base, inc in self.count_names(item.item).items() if not inc.is_(0)}
        varying = [base for base, inc in increments.items() if var in inc.names]
        steady = [base for base in increments if base not in varying]
        index = None
        if steady:
            index = var if _from_zero(item.values) else \
                self.local("i" if not self.indices else "j", "index", frozenset((*self.indices, var)))
        written = len(self.lines)
        saved_counts = dict(scope.counts)
        state = self.assignable(shape, self.needs_dims(item.item))
        inner = scope.copy()
        counters: dict[str, str] = {}
        for base in varying:
            start = scope.counts.get(base, pyexpr.const(0))
            counter = start.src if self.locals.get(start.src) == "counter" else self.fresh(f"n_{base}", "counter")
            if counter != start.src:
                self.set((counter,), (start,))
            counters[base] = counter
            inner.counts[base] = scope.counts[base] = pyexpr.name(counter)
        length = self.length(item.values, over) if steady else None
        for base in steady:
            start = scope.counts.get(base, pyexpr.const(0))
            inner.counts[base] = pyexpr.count_sum(start, pyexpr.binary("*", increments[base], pyexpr.name(index)))
            scope.counts[base] = pyexpr.count_sum(start, pyexpr.binary("*", increments[base], length))

        def loop_body():
            end = self.item(item.item, state, inner)
            self.assign(state, end, item)
            for base, counter in counters.items():
                if inner.counts[base].src != counter:
                    self.set((counter,), (inner.counts[base],))

        self.indices += [var] if index in (None, var) else [var, index]
        depth = len(self.indices)
        pinned = len(self.pinned)
        try:
            with self.binding(item.name, pyexpr.item_of(over, var)):
                lines, _ = self.capture(loop_body)
        except RankChange:
            if not over.known:
                raise
            # A body that turns an image into a vector: each iteration written out, as a repeat's are.
            del self.pinned[pinned:]
            del self.lines[written:]
            scope.counts = saved_counts
            return self.unrolled(item, over.value, shape, scope)
        finally:
            del self.indices[depth - (1 if index in (None, var) else 2):]
        head = f"for {var} in {over}:" if index in (None, var) else f"for {index}, {var} in enumerate({over}):"
        self.emit(head)
        self.lines += lines or ["    " * (self.depth + 1) + "pass"]
        return state

    def unrolled(self, item: ir.Loop, over: tuple, shape: Shape, scope: _Scope) -> Shape:
        """A loop over a list known here, written out once per value."""
        for value in over:
            with self.binding(item.name, pyexpr.const(value)):
                shape = self.item(item.item, shape, scope)
        return shape

    @contextlib.contextmanager
    def binding(self, name: str, value: Py):
        """Within the block, the archdsl name ``name`` is ``value`` (a loop's variable)."""
        saved = self.env
        self.env = {**saved, name: value}
        try:
            yield
        finally:
            self.env = saved

    def length(self, values: ir.Expr, over: Py) -> Py:
        """The number of items of a loop's list: ``len(xs)`` for ``range(len(xs))``."""
        if over.known:
            return pyexpr.const(len(over.value))
        if _from_zero(values) and isinstance(values.args[0], ir.Func) and values.args[0].name == "len":
            return self.translate(values.args[0])
        return pyexpr.call("len", [over])

    def count_names(self, item: ir.Item) -> dict[str, Py]:
        """How many nodes of each name an item adds to its scope: the step of a loop's names."""
        if isinstance(item, ir.Call):
            if item.name in self.file.program.blocks:
                return {item.name: pyexpr.const(1)}
            found = lookup(item.name)
            if found is None:
                raise Unsupported(f"unknown layer or block '{item.name}'", item.name_span)
            return {found[0].key: pyexpr.const(1)}
        if isinstance(item, ir.Branch):
            return {item.op: pyexpr.const(1)}
        if isinstance(item, ir.Group):
            total: dict[str, Py] = {}
            for inner in item.items:
                for base, n in self.count_names(inner).items():
                    total[base] = pyexpr.binary("+", total.get(base, pyexpr.const(0)), n)
            return total
        if isinstance(item, ir.Repeat):
            count = self.translate(item.count)
            if count.known and (not isinstance(count.value, int) or isinstance(count.value, bool) or count.value < 0):
                count = pyexpr.const(0)
            return {base: pyexpr.binary("*", n, count) for base, n in self.count_names(item.item).items()}
        if isinstance(item, ir.Loop):
            return self.count_loop_names(item)
        test = self.translate(item.test)
        then, otherwise = self.count_names(item.then), self.count_names(item.otherwise)
        zero = pyexpr.const(0)
        return {base: pyexpr.conditional(test, then.get(base, zero), otherwise.get(base, zero))
                for base in {**then, **otherwise}}

    def count_loop_names(self, item: ir.Loop) -> dict[str, Py]:
        """How many nodes of each name a loop adds: its body's counts times its length, or their sum over
        the values where they depend on the value (``sum(st[4] for st in stages)``)."""
        over = self.translate(item.values)
        total: dict[str, Py] = {}
        if over.known:  # a known list: the counts of each iteration, summed
            for value in over.value if isinstance(over.value, tuple) else ():
                with self.binding(item.name, pyexpr.const(value)):
                    for base, n in self.count_names(item.item).items():
                        total[base] = pyexpr.count_sum(total.get(base, pyexpr.const(0)), n)
            return total
        var = self.local(item.name, "index", frozenset(self.indices))
        with self.binding(item.name, pyexpr.item_of(over, var)):
            each = self.count_names(item.item)
        for base, n in each.items():
            if var in n.names:
                total[base] = Py(f"sum({n} for {var} in {over})", pyexpr.ATOM, (n.names - {var}) | over.names)
            else:
                total[base] = pyexpr.binary("*", n, self.length(item.values, over))
        return total

    def needs_dims(self, item: ir.Item) -> bool:
        """True when the item reads sizes (a convolution's input channels, say) rather than passing them on."""
        for inner in ir.walk_items((item,)):
            if isinstance(inner, ir.Call):
                found = lookup(inner.name) if inner.name not in self.file.program.blocks else None
                if found is not None and EMITTERS[found[0].key].needs_dims:
                    return True
            elif isinstance(inner, ir.Branch) and inner.op == "concat":
                return True
        return False

    def cond(self, item: ir.Cond, shape: Shape, scope: _Scope, needed: bool) -> Shape:
        test = self.translate(item.test)
        if test.known:
            return self.item(item.then if test.value else item.otherwise, shape, scope, needed)
        if self.needs_dims(item.then) or self.needs_dims(item.otherwise):
            shape = self.unpack(shape)
        then_scope, else_scope = scope.copy(), scope.copy()
        self.pin(shape)
        then_lines, then_end = self.capture(lambda: self.item(item.then, shape, then_scope, needed))
        self.pin(then_end)
        else_lines, else_end = self.capture(lambda: self.item(item.otherwise, shape, else_scope, needed))
        self.pinned[-2:] = []
        for base in {**then_scope.counts, **else_scope.counts}:
            zero = pyexpr.const(0)
            scope.counts[base] = pyexpr.conditional(test, then_scope.counts.get(base, zero),
                                                    else_scope.counts.get(base, zero))
        merged = self._merge(then_end, else_end, item) if needed else then_end
        if merged is not then_end:
            then_lines += self.capture(lambda: self.assign(merged, then_end, item))[0]
            else_lines += self.capture(lambda: self.assign(merged, else_end, item))[0]
        self.emit(f"if {test}:")
        self.lines += then_lines or ["    " * (self.depth + 1) + "pass"]
        self.emit("else:")
        self.lines += else_lines or ["    " * (self.depth + 1) + "pass"]
        return merged

    def _merge(self, then: Shape, otherwise: Shape, item: ir.Cond) -> Shape:
        """The shape after an ``if``: shared expressions stay, the rest go through locals set in both arms."""
        if then.expr().src == otherwise.expr().src:
            return then
        if then.layout != otherwise.layout:
            raise Unsupported("the two arms of this if give shapes of different ranks", item.span)
        if then.dims is None and otherwise.dims is None:
            return then.of(whole=pyexpr.name(self.reusable([otherwise.whole, then.whole], "shape", set())))
        dims: list[Py] = []
        for preferred, position in zip(_dim_names(then.layout), range(then.rank)):
            a, b = then.dim(position), otherwise.dim(position)
            if then.dims is not None and otherwise.dims is not None and a.src == b.src:
                dims.append(a)
            else:
                dims.append(pyexpr.name(self.reusable([b, a], preferred, {d.src for d in dims})))
        return then.of(dims=tuple(dims))

    def reusable(self, options: list[Py], preferred: str, taken: set[str]) -> str:
        """A shape local to hold a merged size: one the arms already use when it is free, else a new one."""
        for option in options:
            if self.locals.get(option.src) == "shape" and option.src not in taken \
                    and not any(option.src in p for p in self.pinned):
                return option.src
        return self.local(preferred, "shape", frozenset(taken))

    def join(self, item: ir.Branch, shape: Shape, scope: _Scope) -> Shape:
        if any(self.needs_dims(i) for branch in item.branches for i in branch):
            shape = self.unpack(shape)
        self.pin(shape)
        containers, ends = [], []
        for position, body in enumerate(item.branches):
            container = self.local(f"b{position}", "branch", shape.names)
            self.emit(f"{container} = nn.Sequential()")
            self.pin(container)
            # add returns the first branch's shape: the others' are checked by archdsl, not read here
            prefix = None
            if scope.prefix is not None and scope.counts.get(item.op, pyexpr.const(0)).known:
                prefix = f"{scope.prefix}{item.op}_{scope.counts.get(item.op, pyexpr.const(0)).value}.b{position}."
            end = self.items(body, shape, _Scope(container, prefix=prefix), needed=item.op != "add" or position == 0)
            containers.append(container)
            ends.append(end)
            self.pinned[-1] = self.pinned[-1] | end.names
        del self.pinned[-1 - len(ends):]
        helper, _ = JOIN_CLASSES[item.op]
        self.file.joins.add(item.op)
        self.place(scope, item.op, f"{helper}({', '.join(containers)})")
        if item.op == "add":
            return ends[0]
        if any(end.layout != ends[0].layout for end in ends):
            raise Unsupported(f"the branches of this {item.op} give shapes of different ranks", item.span)
        if item.op == "mul":
            rank = ends[0].rank
            return ends[0].of(dims=tuple(_broadcast([end.dim(i) for end in ends]) for i in range(rank)))
        channels = ends[0].dim(0)
        for end in ends[1:]:
            channels = pyexpr.binary("+", channels, end.dim(0))
        rest = [ends[0].dim(i) for i in range(1, ends[0].rank)]
        return Shape(ends[0].rank, dims=(channels, *rest))

# Lists nest at most this deep in a parameter (the command line's values nest 8 deep): where the analysis
# below finds deeper ones (a block that wraps its argument in a list and passes it on), it stops there.
_MAX_NESTING = 8


def _list_depths(program: Program, definition: ir.NetworkDef, bound: dict[str, ir.Value]) -> dict[str, dict[str, int]]:
    """How deep the lists that each parameter of each block may hold nest, over every call the network can
    reach with parameters of the kinds it was exported with: 0 where a parameter only ever holds a number.

    With ``block conv_bn(c, k = 1, s = 1) = conv c k=k s=s`` called as ``conv_bn(64, (1, 7))``, k may be a
    list (1) and s never is (0)."""
    table: dict[str, dict[str, int]] = {}
    pending: list[str] = []

    def visit(items: tuple[ir.Item, ...], env: dict[str, int]) -> None:
        stack = [(item, env) for item in items]
        while stack:
            item, scope = stack.pop()
            if isinstance(item, ir.Call) and item.name in program.blocks:
                merge(program.blocks[item.name], item, scope)
            elif isinstance(item, ir.Group):
                stack += [(inner, scope) for inner in item.items]
            elif isinstance(item, ir.Repeat):
                stack.append((item.item, scope))
            elif isinstance(item, ir.Loop):
                stack.append((item.item, {**scope, item.name: max(_depth(item.values, scope) - 1, 0)}))
            elif isinstance(item, ir.Cond):
                stack += [(item.then, scope), (item.otherwise, scope)]
            elif isinstance(item, ir.Branch):
                stack += [(inner, scope) for branch in item.branches for inner in branch]

    def merge(block: ir.BlockDef, call: ir.Call, env: dict[str, int]) -> None:
        names = [param.name for param in block.params]
        changed = block.name not in table
        known = table.setdefault(block.name, dict.fromkeys(names, 0))
        for position, arg in enumerate(call.args):
            name = arg.name if arg.name is not None else names[position] if position < len(names) else None
            depth = _depth(arg.value, env)
            if name in names and depth > known[name]:
                known[name] = depth
                changed = True
        if changed and block.name not in pending:
            pending.append(block.name)

    visit(definition.body, {name: pyexpr.nesting(value) for name, value in bound.items()})
    while pending:
        block = program.blocks[pending.pop()]
        env = dict(table[block.name])
        for param in block.params:  # a default is what a call that leaves the parameter out passes
            if param.default is not None:
                env[param.name] = table[block.name][param.name] = \
                    max(env.get(param.name, 0), _depth(param.default, env))
        visit(block.body, env)
    return table


def _depth(expr: ir.Expr, env: dict[str, int]) -> int:
    """How deep the lists that ``expr`` may give nest, its names' as ``env`` says (0: a number)."""
    if isinstance(expr, ir.Var):
        return env.get(expr.name, 0)
    if isinstance(expr, ir.ListExpr):
        return min(1 + max((_depth(item, env) for item in expr.items), default=0), _MAX_NESTING)
    if isinstance(expr, ir.Index):
        return max(_depth(expr.value, env) - 1, 0)
    if isinstance(expr, ir.SliceExpr):
        return _depth(expr.value, env)
    if isinstance(expr, ir.ListFor):
        inner = {**env, expr.name: max(_depth(expr.values, env) - 1, 0)}
        return min(1 + _depth(expr.item, inner), _MAX_NESTING)
    if isinstance(expr, ir.CondExpr):
        return max(_depth(expr.then, env), _depth(expr.otherwise, env))
    if isinstance(expr, ir.Func):
        return 1 if expr.name == "range" else 0
    return 0  # numbers, in.c, arithmetic and comparisons


def _broadcast(sizes: list[Py]) -> Py:
    """One size of a product of branches, as torch broadcasts them: 1 gives way to the others, which
    archdsl has checked are equal (``max`` where the export cannot tell which is 1)."""
    others = []
    for size in sizes:
        if not size.is_(1) and all(size.src != other.src for other in others):
            others.append(size)
    if not others:
        return pyexpr.const(1)
    return others[0] if len(others) == 1 else pyexpr.call("max", others, known=max)


def _from_zero(values: ir.Expr) -> bool:
    """Whether a loop's list is ``range(n)``: each value is the iteration's index."""
    return isinstance(values, ir.Func) and values.name == "range" and len(values.args) == 1


def _dim_names(layout: Layout) -> tuple[str, ...]:
    return _DIM_NAMES.get(layout) or tuple(f"size{i}" for i in range(layout.rank))


def _coerce(type_: type, value: Py) -> Py:
    """Known values take the argument's type, as ``resolve`` coerces them (``bias=1`` is True)."""
    if not value.known:
        return value
    if type_ is bool:
        return pyexpr.const(bool(value.value))
    if type_ is float and not isinstance(value.value, bool):
        return pyexpr.const(float(value.value))
    return value


def _literal_default(expr: ir.Expr | None) -> str | None:
    """The Python literal for a parameter default that is a plain number (or true, false), else None."""
    if isinstance(expr, ir.Number):
        return repr(expr.value)
    if isinstance(expr, ir.UnOp) and expr.op == "-" and isinstance(expr.operand, ir.Number):
        return repr(-expr.operand.value)
    if isinstance(expr, ir.Var) and expr.name in ("true", "false"):
        return repr(expr.name == "true")
    return None


def _comment_above(node: ir.BlockDef | ir.NetworkDef) -> str:
    """The ``#`` comment lines right above a definition: the spec author's description."""
    lines = node.span.source.text.splitlines()[: node.span.line - 1]
    return "\n".join(reversed(_comment_lines(reversed(lines))))


def _file_comment(node: ir.NetworkDef) -> str:
    """The ``#`` comment lines that open the file a definition is in, unless they are the comment right
    above a block (that block's description, not the network's)."""
    lines = node.span.source.text.splitlines()
    opening = _comment_lines(lines)
    after = lines[len(opening)] if len(opening) < len(lines) else ""
    return "" if re.match(r"\s*block\b", after) else "\n".join(opening)


def _comment_lines(lines) -> list[str]:
    """The texts of the ``#`` comment lines at the start of ``lines``."""
    found = itertools.takewhile(lambda line: line.lstrip().startswith("#"), lines)
    return [line.lstrip()[1:].strip() for line in found]


def _docstring(block: ir.BlockDef) -> str:
    lead = _comment_above(block)
    where = f"archdsl block {block.name} ({block.span.file}:{block.span.line})."
    return f"{lead}\n\n{where}" if lead else where


