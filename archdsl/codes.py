"""Stable error codes: one table that names every kind of mistake (``A101``: unknown layer or block), with what it
means, a spec that makes it and the same spec fixed.

A code is found from the error's family and its message (and hint, where the hint is what tells two mistakes
apart), so raise sites stay as they are; an error that no row matches gets its family's code (``A000`` syntax,
``A100`` names and values, ``A300`` shapes, ``A600`` limits, ``A700`` the command line, ``A800`` backends).
Codes never change meaning: a new kind of mistake gets a new code, and a code that is no longer raised stays
documented. ``archdsl explain A101`` prints a row; ``docs/errors.md`` is made from the table
(``python scripts/make_error_docs.py``), and the tests check that each wrong example gives its code and each
fixed one checks clean.

Ranges: A0xx syntax, A1xx names, A2xx arguments, A3xx shapes, A4xx values, A5xx files, A6xx limits, A7xx
networks and the command line, A8xx backends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from archdsl.errors import ArchError, BackendError, LimitError, ParseError, ResolveError, ShapeError, UsageError


@dataclass(frozen=True)
class Example:
    """A spec (``text``, as the file ``net.arch``), the options of the command that checks it, and other files
    it imports (path -> text). ``command`` is what shows the mistake: ``check``, or ``compile`` for what only
    choosing one network raises."""

    text: str
    args: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    command: str = "check"


@dataclass(frozen=True)
class Code:
    code: str
    title: str
    family: type[ArchError]
    # A regular expression the message starts with, or (that, one the hint contains) where the hint is what
    # tells the mistake; None for a family's own code.
    when: str | tuple[str, str] | None
    explanation: str
    wrong: Example
    fixed: Example

    def matches(self, err: ArchError) -> bool:
        if self.when is None or not isinstance(err, self.family):
            return False
        message, hint = self.when if isinstance(self.when, tuple) else (self.when, None)
        return re.match(message, err.message) is not None and (hint is None or re.search(hint, err.hint or "") is not None)


def _net(body: str, shape: str = "[1, 28, 28]", name: str = "n") -> str:
    return f"network {name} : {shape} = {body}\n"


CODES: tuple[Code, ...] = (
    # -- syntax --------------------------------------------------------------------------------------------
    Code("A000", "syntax error", ParseError, None,
         "The text is not a well-formed spec: the parser met a token where the grammar allows none like it. The "
         "message lists what it expected there.",
         Example(_net("conv3x3 8 s=;")), Example(_net("conv3x3 8 s=1;"))),
    Code("A001", "missing ';' between items", ParseError, r"expected ';' before",
         "Items of a sequence (layers, block calls, groups, branches) are separated by ';'. Two items side by side "
         "read as one item with an argument, so the parser stops at the second.",
         Example(_net("conv3x3 8 <relu; maxpool2>; flatten; linear 10")),
         Example(_net("conv3x3 8; <relu; maxpool2>; flatten; linear 10"))),
    Code("A002", "unexpected end of file", ParseError, r"unexpected end of file",
         "The file ends in the middle of a definition: a body, a shape or an argument is missing.",
         Example("network n : [1, 28, 28] =\n"), Example(_net("flatten; linear 10"))),
    Code("A003", "unexpected character", ParseError, r"unexpected character",
         "A character that the language does not use: groups are written < ... >, branches [ A | B ], and "
         "import paths take double quotes.",
         Example(_net("{conv3x3 8; relu}; flatten; linear 10")),
         Example(_net("<conv3x3 8; relu>; flatten; linear 10"))),
    Code("A004", "bracket never closed", ParseError, (r"unexpected", r"is never closed"),
         "A '<', '[' or '(' is still open where its definition ends. The hint says where it was opened.",
         Example(_net("<conv3x3 8; relu; flatten; linear 10")), Example(_net("<conv3x3 8; relu>; flatten; linear 10"))),
    Code("A005", "'>' without '<'", ParseError, (r"unexpected '>'", r"no '<' is open"),
         "A '>' closes a group, and no group is open there.",
         Example(_net("conv3x3 8; relu>; flatten; linear 10")), Example(_net("conv3x3 8; relu; flatten; linear 10"))),
    Code("A006", "comparison outside an if", ParseError, (r"unexpected '>'", r"comparison belongs"),
         "Comparisons (== != < <= > >=) appear only in the test of an if, so that '>' always closes a group "
         "elsewhere.",
         Example("block b(c) = conv3x3 c > 8\n" + _net("b(16)", "[3, 32, 32]")),
         Example("block b(c) = if c > 8 then conv3x3 c else conv3x3 8\n" + _net("b(16)", "[3, 32, 32]"))),
    Code("A007", "network without an input shape", ParseError, (r"unexpected", r"declares its input shape"),
         "A network declares the shape of its input, batch left out: network NAME : [C, H, W] = ...",
         Example("network n = flatten; linear 10\n"), Example(_net("flatten; linear 10"))),
    Code("A008", "empty branch", ParseError, (r"unexpected", r"a branch needs at least one item"),
         "Each branch of concat, add or mul holds at least one item; 'id' passes the input through unchanged.",
         Example(_net("add [conv3x3 8 |]", "[8, 8, 8]")), Example(_net("add [conv3x3 8 | id]", "[8, 8, 8]"))),
    Code("A009", "'=' without a name", ParseError, (r"unexpected '='", r"keyword arguments"),
         "A keyword argument is written name=value after the layer's name; '=' alone has nothing to name.",
         Example(_net("conv 8 = 3", "[3, 32, 32]")), Example(_net("conv 8 k=3", "[3, 32, 32]"))),
    Code("A010", "space-separated argument starting with a sign", ParseError, (r"unexpected", r"cannot start with a sign"),
         "Between space-separated arguments, '-' subtracts: conv3x3 c -1 reads as conv3x3 (c - 1). Give a "
         "negative argument by name or in parentheses.",
         Example(_net("leakyrelu -0.2", "[8, 8, 8]")), Example(_net("leakyrelu slope=-0.2", "[8, 8, 8]"))),
    Code("A011", "space-separated argument starting with a list", ParseError, (r"unexpected", r"a list cannot start a space-separated argument"),
         "After a space-separated argument, '[' indexes it: conv3x3 w [1] reads as item 1 of w. Give a list "
         "argument by name, k=[1, 7], or as (1, 7).",
         Example(_net("maxpool [2, 2]", "[8, 8, 8]")), Example(_net("maxpool (2, 2)", "[8, 8, 8]"))),
    # -- names ---------------------------------------------------------------------------------------------
    Code("A100", "names, arguments and values", ResolveError, None,
         "An error in what the spec's names and values mean that has no code of its own: the message says what "
         "is wrong and where.",
         Example(_net("for w in range(8, 32, 0) conv3x3 w", "[1, 8, 8]")),
         Example(_net("for w in range(8, 32, 8) conv3x3 w", "[1, 8, 8]"))),
    Code("A101", "unknown layer or block", ResolveError, r"unknown layer or block '",
         "A call names neither a layer kind nor a block of the spec or its imports. The hint gives the closest "
         "name, and the archdsl name of a PyTorch or Keras layer (BatchNorm2d: bn, Dense: linear); `archdsl "
         "layers` lists the layer kinds.",
         Example(_net("conv3x 6; relu; flatten; linear 10")), Example(_net("conv3x3 6; relu; flatten; linear 10"))),
    Code("A102", "layer or block where an argument belongs", ResolveError, r"'[^']*' is a (layer|block), not an argument",
         "A layer's arguments are followed by the name of a layer or block: a ';' is most likely missing before it.",
         Example(_net("conv3x3 6 relu; flatten; linear 10")), Example(_net("conv3x3 6; relu; flatten; linear 10"))),
    Code("A103", "unknown name", ResolveError, r"unknown name '",
         "An expression reads a name that no parameter or loop binds where it is written. A block sees its own "
         "parameters and loop variables, not its caller's.",
         Example("block b(c) = conv3x3 width\n" + _net("b(8)", "[1, 8, 8]")),
         Example("block b(c) = conv3x3 c\n" + _net("b(8)", "[1, 8, 8]"))),
    Code("A104", "unknown function", ResolveError, r"unknown function '",
         "Expressions may call min, max, round, floor, ceil, log, pow, len, sum, range and make_divisible.",
         Example(_net("conv3x3 mean([8, 16])", "[1, 8, 8]")), Example(_net("conv3x3 max([8, 16])", "[1, 8, 8]"))),
    Code("A105", "unknown input size", ResolveError, r"unknown input size '",
         "The sizes of the tensor entering a block are in.c, in.h and in.w.",
         Example("block t = conv1x1 in.channels // 2\n" + _net("t", "[8, 8, 8]")),
         Example("block t = conv1x1 in.c // 2\n" + _net("t", "[8, 8, 8]"))),
    Code("A106", "block calls itself", ResolveError, r"block '[^']*' calls itself",
         "Blocks cannot recurse, directly or through other blocks; repeat N ... repeats an item.",
         Example("block tower(c) = conv3x3 c; tower(c)\n" + _net("tower(8)", "[1, 8, 8]")),
         Example("block tower(c, n) = repeat n conv3x3 c\n" + _net("tower(8, 3)", "[1, 8, 8]"))),
    Code("A107", "defined twice", ResolveError, r"(block|network) '[^']*' is defined twice",
         "Block names are global across a spec and its imports, and network names across a spec: each is "
         "defined once. The note shows the first definition.",
         Example("block stem = conv3x3 8\nblock stem = conv3x3 16\n" + _net("stem", "[1, 8, 8]")),
         Example("block stem = conv3x3 8\nblock wide_stem = conv3x3 16\n" + _net("stem", "[1, 8, 8]"))),
    Code("A108", "block named like a layer", ResolveError, r"block '[^']*' has the name of a built-in layer",
         "A block cannot take the name of a layer kind (or an alias or spelling of one).",
         Example("block relu = conv3x3 8\n" + _net("relu", "[1, 8, 8]")),
         Example("block conv_relu = conv3x3 8; relu\n" + _net("conv_relu", "[1, 8, 8]"))),
    Code("A109", "parameter named twice", ResolveError, r"(block|network) \S+ has two parameters named",
         "The parameters of a block or network have distinct names.",
         Example("block head(n, n) = linear n\n" + _net("flatten; head(10, 10)", "[1, 8, 8]")),
         Example("block head(n) = linear n\n" + _net("flatten; head(10)", "[1, 8, 8]"))),
    Code("A110", "input size where nothing flows in", ResolveError, r"in\.\w+ has no value here",
         "A network's parameters and input shape are set before any tensor flows: in.c, in.h and in.w are the "
         "sizes entering a body or a block.",
         Example("network n(c = in.h) : [1, 8, 8] = conv3x3 c\n"),
         Example("network n : [1, 8, 8] = conv3x3 in.h\n")),
    Code("A111", "default of something that is not a layer kind", ResolveError, r"'[^']*' is not a layer kind",
         "A default statement names a layer kind (conv, not the spelling conv3x3, which presets arguments).",
         Example("default conv3x3 bias=false\n" + _net("conv3x3 8; bn", "[1, 8, 8]")),
         Example("default conv bias=false\n" + _net("conv3x3 8; bn", "[1, 8, 8]"))),
    # -- arguments -----------------------------------------------------------------------------------------
    Code("A201", "no such argument", ResolveError, r"\S+ has no argument '",
         "A layer kind is given an argument it does not have. The hint names the argument meant (stride is s, "
         "padding p, kernel size k) or the layer's usage.",
         Example(_net("conv 8 k=3 stride=2", "[1, 8, 8]")), Example(_net("conv 8 k=3 s=2", "[1, 8, 8]"))),
    Code("A202", "too many positional arguments", ResolveError, r"\S+ takes \d+ positional argument",
         "Only a layer's required arguments (and a few others: dropout's p) may be given by position; the rest go "
         "by name, so that conv3x3 16 32 is an error rather than a stride of 32.",
         Example(_net("conv3x3 8 2", "[1, 8, 8]")), Example(_net("conv3x3 8 s=2", "[1, 8, 8]"))),
    Code("A203", "missing argument", ResolveError, r"\S+ needs its argument '",
         "A layer is called without a required argument. The hint shows its usage.",
         Example(_net("conv 8", "[1, 8, 8]")), Example(_net("conv 8 k=3", "[1, 8, 8]"))),
    Code("A204", "argument given twice", ResolveError, r"\S+: argument '[^']*' given twice",
         "The same argument is given twice, by position and by name or by name twice.",
         Example(_net("conv 8 3 k=3", "[1, 8, 8]")), Example(_net("conv 8 k=3", "[1, 8, 8]"))),
    Code("A205", "argument the spelling already sets", ResolveError, r"\S+ already sets ",
         "A spelling such as conv3x3 or maxpool2 fixes some arguments; to choose one yourself, call the kind by "
         "its own name.",
         Example(_net("conv3x3 8 k=5", "[1, 8, 8]")), Example(_net("conv 8 k=5 p=2", "[1, 8, 8]"))),
    Code("A206", "argument out of range", ArchError, r".*(must be|must not be) .*, but it is ",
         "An argument's value is outside what it may take: a positive number of channels, a drop probability "
         "in [0, 1), a padding that is not negative.",
         Example(_net("flatten; dropout 1.5; linear 10")), Example(_net("flatten; dropout 0.5; linear 10"))),
    Code("A207", "not a whole number", ArchError, r".* must be a whole number, not ",
         "A whole number is needed (channels, a repeat count) and the value is a decimal, a boolean or a list. '/' "
         "divides exactly and gives a decimal: divide whole numbers with //, or round, floor or ceil the result.",
         Example("block half(c) = conv1x1 c / 2\n" + _net("half(64)", "[3, 8, 8]")),
         Example("block half(c) = conv1x1 c // 2\n" + _net("half(64)", "[3, 8, 8]"))),
    Code("A208", "even kernel with same padding", ResolveError, r"'[^']*' has an even kernel",
         "convKxK pads to keep the size, which only an odd kernel can: give the even kernel and its padding "
         "yourself.",
         Example(_net("conv4x4 8", "[1, 8, 8]")), Example(_net("conv 8 k=4 s=2 p=1", "[1, 8, 8]"))),
    Code("A209", "pool padding past half the window", ShapeError, r"\S+: padding \d+ is more than half the window",
         "PyTorch pads a pooling window by at most half its size (k // 2).",
         Example(_net("maxpool 2 p=2", "[1, 8, 8]")), Example(_net("maxpool 2 p=1", "[1, 8, 8]"))),
    Code("A210", "channels do not split into groups", ShapeError, r"\S+: \d+ (input|output) channels do not split",
         "A grouped convolution's input and output channels are both multiples of its groups.",
         Example(_net("conv 30 k=3 groups=4", "[8, 8, 8]")), Example(_net("conv 32 k=3 groups=4", "[8, 8, 8]"))),
    Code("A211", "channels do not divide into parts", ShapeError, r".* do not divide the \d+ channels",
         "chunk N I and a group count split the channels into equal parts, which they must divide; slice A B "
         "takes any run of channels.",
         Example(_net("conv3x3 25; chunk 2 0", "[3, 8, 8]")), Example(_net("conv3x3 24; chunk 2 0", "[3, 8, 8]"))),
    Code("A212", "window that is not one number or two", ResolveError, r".* must be a whole number or a list of two",
         "A window, stride, padding or dilation is one whole number or a list of two, (height, width).",
         Example(_net("conv 8 k=[1, 3, 3]", "[1, 8, 8]")), Example(_net("conv 8 k=[1, 3] p=[0, 1]", "[1, 8, 8]"))),
    Code("A221", "block parameter not given", ResolveError, r"block \S+ needs its parameter '",
         "A block is called without a value for a parameter that has no default.",
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(2)", "[1, 8, 8]")),
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(2, 8)", "[1, 8, 8]"))),
    Code("A222", "no such block parameter", ResolveError, r"block \S+ has no parameter '",
         "A block call names a parameter that the block does not have.",
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(n=2, channels=8)", "[1, 8, 8]")),
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(n=2, c=8)", "[1, 8, 8]"))),
    Code("A223", "too many block arguments", ResolveError, r"block \S+ takes \d+ arguments?, but more",
         "A block call gives more arguments than the block has parameters.",
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(2, 8, 3)", "[1, 8, 8]")),
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(2, 8)", "[1, 8, 8]"))),
    Code("A224", "block parameter given twice", ResolveError, r"block \S+: parameter '[^']*' given twice",
         "A block call gives the same parameter twice, by position and by name or by name twice.",
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(2, n=2)", "[1, 8, 8]")),
         Example("block vgg(n, c) = repeat n conv3x3 c\n" + _net("vgg(2, c=8)", "[1, 8, 8]"))),
    # -- shapes --------------------------------------------------------------------------------------------
    Code("A300", "shapes", ShapeError, None,
         "A tensor shape that a layer cannot take, without a code of its own: the message names the layer and "
         "its input.",
         Example(_net("conv3x3 8; slice 4 12", "[1, 8, 8]")), Example(_net("conv3x3 8; slice 4 8", "[1, 8, 8]"))),
    Code("A301", "add of different shapes", ShapeError, r"add needs equal shapes",
         "The branches of add are summed, so they give equal shapes: the same channels, and the same stride on "
         "every branch.",
         Example(_net("add [conv3x3 16 s=2 | id]", "[16, 32, 32]")),
         Example(_net("add [conv3x3 16 s=2 | conv1x1 16 s=2]", "[16, 32, 32]"))),
    Code("A302", "concat of different sizes", ShapeError, r"concat joins on channels and needs equal H×W",
         "concat joins its branches on channels, so they give the same height and width.",
         Example(_net("concat [conv3x3 8 | conv 8 k=3]", "[3, 32, 32]")),
         Example(_net("concat [conv3x3 8 | conv 8 k=3 p=1]", "[3, 32, 32]"))),
    Code("A303", "mul of shapes that do not broadcast", ShapeError, r"mul needs shapes that broadcast",
         "mul multiplies its branches elementwise, broadcasting as torch's * does: each size equal, or 1 on one "
         "side (a C×1×1 gate over C×H×W).",
         Example(_net("mul [id | gap; conv1x1 8; sigmoid]", "[16, 16, 16]")),
         Example(_net("mul [id | gap; conv1x1 in.c; sigmoid]", "[16, 16, 16]"))),
    Code("A304", "window larger than its input", ShapeError, r"\S+ window .* is larger than its input",
         "A convolution or pooling window must fit in its padded input: the input is too small, or too many "
         "layers before it downsample.",
         Example(_net("repeat 4 maxpool2; conv3x3 8", "[1, 8, 8]")),
         Example(_net("repeat 3 maxpool2; conv3x3 8", "[1, 8, 8]"))),
    Code("A305", "output differs from the declaration", ShapeError, r"network \S+ outputs .*, but its declaration says",
         "The network's output shape differs from the one declared after '->'.",
         Example("network n : [1, 28, 28] -> [10] = flatten; linear 84\n"),
         Example("network n : [1, 28, 28] -> [10] = flatten; linear 84; linear 10\n")),
    Code("A306", "layer that needs a vector", ShapeError, r"\S+ takes a flat vector, but its input is",
         "linear takes a vector: flatten the image first (or gap; flatten).",
         Example(_net("conv3x3 8; linear 10")), Example(_net("conv3x3 8; flatten; linear 10"))),
    Code("A307", "layer that needs an image", ShapeError, r"\S+ takes a C×H×W image, but its input is",
         "Convolutions and pools take a C×H×W image, and their input is a vector: they come before flatten.",
         Example(_net("flatten; conv3x3 8")), Example(_net("conv3x3 8; flatten"))),
    Code("A308", "input declared without channels", ShapeError, r"network \S+ takes .*, but its first layer",
         "A network's input declares the channels too: [1, 28, 28] for a grey image, not [28, 28].",
         Example(_net("conv3x3 8", "[28, 28]")), Example(_net("conv3x3 8", "[1, 28, 28]"))),
    Code("A309", "image size of a vector", ShapeError, r"in\.\w+ is undefined: the input here is the vector",
         "in.h and in.w are the height and width of an image; a vector has only its length, in.c.",
         Example("block head = linear in.h\n" + _net("flatten; head", "[3, 8, 8]")),
         Example("block head = linear in.c\n" + _net("flatten; head", "[3, 8, 8]"))),
    Code("A310", "input size not positive", ShapeError, r"(input|output) sizes must be positive whole numbers",
         "The sizes of a network's input (and of its declared output) are positive whole numbers.",
         Example("network n(channels = 0) : [channels, 8, 8] = relu\n"),
         Example("network n(channels = 1) : [channels, 8, 8] = relu\n")),
    Code("A311", "layer that needs tokens", ShapeError, r"\S+ takes tokens L×D, but its input is",
         "Attention, a class token, a position embedding and the layers that take one token or their mean work on "
         "tokens (L×D): 'tokens' turns a C×H×W image into H·W tokens of C features.",
         Example(_net("conv 16 k=4 s=4; attention heads=2", "[3, 16, 16]")),
         Example(_net("conv 16 k=4 s=4; tokens; attention heads=2", "[3, 16, 16]"))),
    Code("A312", "layer that needs tokens on a grid", ShapeError, r"\S+ takes tokens on an H×W grid, but its input is",
         "Swin's window attention and patch merging need tokens that lie on an H×W grid: those 'tokens' makes of an "
         "image, before anything (a class token) makes them a plain sequence.",
         Example(_net("conv 16 k=4 s=4; tokens; clstoken; patchmerge", "[3, 16, 16]")),
         Example(_net("conv 16 k=4 s=4; tokens; patchmerge; clstoken", "[3, 16, 16]"))),
    Code("A313", "position embedding of another length", ShapeError, r"\S+ \d+ embeds \d+ positions, but the input is",
         "A position embedding has one learned vector per token: its length is the number of tokens that reach it "
         "(patches, and a class token).",
         Example(_net("conv 16 k=4 s=4; tokens; clstoken; posembed 16", "[3, 16, 16]")),
         Example(_net("conv 16 k=4 s=4; tokens; clstoken; posembed 17", "[3, 16, 16]"))),
    Code("A314", "attention heads that do not divide the features", ShapeError, r"\S+: \d+ heads do not divide the",
         "Multi-head attention splits each token's features among its heads: the number of heads divides them.",
         Example(_net("conv 16 k=4 s=4; tokens; attention heads=3", "[3, 16, 16]")),
         Example(_net("conv 16 k=4 s=4; tokens; attention heads=4", "[3, 16, 16]"))),
    Code("A315", "windows that do not tile the grid", ShapeError, r"\S+: (windows|partitions) of \S+ do not tile",
         "Window attention cuts the grid of tokens into windows, and MaxViT's partition attention into partitions: "
         "the window or partition divides its height and width.",
         Example(_net("conv 16 k=4 s=4; tokens; windowattention heads=2 window=3", "[3, 16, 16]")),
         Example(_net("conv 16 k=4 s=4; tokens; windowattention heads=2 window=2", "[3, 16, 16]"))),
    # -- values --------------------------------------------------------------------------------------------
    Code("A401", "division by zero", ResolveError, r"division by zero",
         "An expression divides by zero (with /, // or %, or 0 raised to a negative power).",
         Example("network n(groups = 0) : [8, 8, 8] = conv1x1 8 // groups\n"),
         Example("network n(groups = 2) : [8, 8, 8] = conv1x1 8 // groups\n")),
    Code("A402", "symbolic size without an exact form", ResolveError, r".* has no exact form",
         "A symbolic size (H of an input [1, H, W]) combines with whole numbers only: times a decimal it has no "
         "exact size. Give a concrete input to compute it.",
         Example("block widen(c = in.h * 1.5) = conv1x1 c\n" + _net("widen()", "[3, H, W]")),
         Example("block widen(c = round(in.h * 1.5)) = conv1x1 c\n" + _net("widen()", "[3, 32, 32]"))),
    Code("A403", "division by a symbolic size", ResolveError, r"cannot divide by the symbolic size",
         "// and % need a number on their right: how often a symbolic size fits into another number depends on "
         "the input.",
         Example(_net("maxpool (64 // in.h)", "[3, H, W]")), Example(_net("maxpool (64 // in.h)", "[3, 32, 32]"))),
    Code("A404", "boolean in arithmetic", ResolveError, r"'[^']*' takes numbers, not the boolean",
         "true and false are switches (bias=false) and the values of tests, not numbers.",
         Example(_net("conv3x3 (8 + true)", "[3, 8, 8]")), Example(_net("conv3x3 (8 + 1)", "[3, 8, 8]"))),
    Code("A405", "test that depends on the input size", ResolveError, r"whether .* depends on the input size",
         "A test compares a symbolic size (H of [3, H, W]) in a way that differs between input sizes: give a "
         "concrete input.",
         Example("block stem = if in.h > 64 then conv3x3 16 s=2 else conv3x3 16\n" + _net("stem", "[3, H, W]")),
         Example("block stem = if in.h > 64 then conv3x3 16 s=2 else conv3x3 16\n" + _net("stem", "[3, 96, 96]"))),
    Code("A406", "number too large", LimitError, r"\S+ is too large: numbers in a spec lie within",
         "Numbers in a spec lie within ±2**62, far beyond any size, count or setting of a network.",
         Example(_net("conv3x3 9223372036854775808", "[3, 8, 8]")), Example(_net("conv3x3 8", "[3, 8, 8]"))),
    Code("A407", "list index out of range", ResolveError, r"index \S+ is out of range",
         "A list's items are counted from 0 (from the end when negative), and the index is past its end.",
         Example("network n(widths = [64, 128, 256]) : [3, 8, 8] = conv3x3 widths[3]\n"),
         Example("network n(widths = [64, 128, 256]) : [3, 8, 8] = conv3x3 widths[2]\n")),
    Code("A408", "for over something that is not a list", ResolveError, r"for loops over a list",
         "for NAME in LIST goes over a list; to repeat an item n times, loop over range(n) or use repeat n.",
         Example("network n(stages = 4) : [3, 8, 8] = for s in stages conv3x3 16\n"),
         Example("network n(stages = 4) : [3, 8, 8] = for s in range(stages) conv3x3 16\n")),
    # -- files ---------------------------------------------------------------------------------------------
    Code("A501", "no such file", ResolveError, r"(cannot import \"[^\"]*\": there is no file|no such file)",
         "An imported file does not exist. Import paths are relative to the importing file.",
         Example('import "lib/blocks.arch"\n' + _net("stem", "[1, 8, 8]"), files={"blocks.arch": "block stem = relu\n"}),
         Example('import "blocks.arch"\n' + _net("stem", "[1, 8, 8]"), files={"blocks.arch": "block stem = relu\n"})),
    Code("A502", "import cycle", ResolveError, r"import cycle",
         "Two files import each other (directly or through others). Move the shared blocks into a file that both "
         "import.",
         Example('import "lib.arch"\nblock stem = relu\n' + _net("head", "[1, 8, 8]"),
                 files={"lib.arch": 'import "net.arch"\nblock head = stem\n'}),
         Example('import "lib.arch"\n' + _net("head", "[1, 8, 8]"),
                 files={"lib.arch": 'import "stem.arch"\nblock head = stem\n', "stem.arch": "block stem = relu\n"})),
    Code("A503", "import outside the allowed folders", ResolveError, r"cannot import \"[^\"]*\": .* is outside the folders",
         "An import reaches only into the spec's own folder and those below it, so that a spec from someone else "
         "cannot read files elsewhere; --allow-import-dir DIR allows another folder.",
         Example('import "../shared.arch"\n' + _net("stem", "[1, 8, 8]"), files={"../shared.arch": "block stem = relu\n"}),
         Example('import "../shared.arch"\n' + _net("stem", "[1, 8, 8]"), args=("--allow-import-dir", ".."),
                 files={"../shared.arch": "block stem = relu\n"})),
    Code("A504", "not a readable spec file", ResolveError,
         r"(cannot import \"[^\"]*\": )?(.* is (a|an) .*, not a spec file|cannot read |the file is not UTF-8)",
         "The file is a folder, a device or a pipe, cannot be read, or is not UTF-8 text.",
         Example('import "lib"\n' + _net("stem", "[1, 8, 8]"), files={"lib/blocks.arch": "block stem = relu\n"}),
         Example('import "lib/blocks.arch"\n' + _net("stem", "[1, 8, 8]"), files={"lib/blocks.arch": "block stem = relu\n"})),
    # -- limits --------------------------------------------------------------------------------------------
    Code("A600", "resource limits", LimitError, None,
         "A spec that would go past a limit archdsl keeps (the size of a file, its tokens, the items of a list), "
         "refused before anything is built.",
         Example(_net("for w in range(20000) relu", "[1, 8, 8]")), Example(_net("for w in range(20) relu", "[1, 8, 8]"))),
    Code("A601", "size past what archdsl computes with", LimitError, r".* past what archdsl computes with",
         "A size grows past ±2**62, as one that doubles at each step does after 62 steps.",
         Example(_net("repeat 70 concat [id | id]", "[1, 8, 8]")), Example(_net("repeat 7 concat [id | id]", "[1, 8, 8]"))),
    Code("A602", "too many steps", LimitError, r".* more than [\d,]+ steps",
         "Expanding the network would take more than a million steps (layers, block calls, joins and terms of "
         "expressions), even where it makes few layers.",
         Example("block nothing = repeat 0 relu\n" + _net("repeat 2000000 nothing", "[1, 8, 8]")),
         Example("block nothing = repeat 0 relu\n" + _net("repeat 20 nothing", "[1, 8, 8]"))),
    Code("A603", "too many layers", LimitError, r".* more than [\d,]+ layers",
         "The network would have more than 200,000 layers.",
         Example(_net("repeat 300000 relu", "[1, 8, 8]")), Example(_net("repeat 300 relu", "[1, 8, 8]"))),
    Code("A604", "too many parameters", LimitError, r"network \S+ needs [\d,]+ parameters",
         "The network's weights would not fit in the machine's memory (or pass --max-params).",
         Example(_net("conv3x3 64; flatten; linear 10", "[1, 8, 8]"), args=("--max-params", "1000")),
         Example(_net("conv3x3 64; flatten; linear 10", "[1, 8, 8]"), args=("--max-params", "100000"))),
    Code("A605", "nested too deep", LimitError, r"(nesting deeper than|expression nested more than)",
         "Groups, repeats, branches and block calls (or an expression's parentheses) nest more than 64 deep; no "
         "real network does.",
         Example(_net("<" * 70 + "relu" + ">" * 70, "[1, 8, 8]")), Example(_net("<<relu>>", "[1, 8, 8]"))),
    # -- networks and the command line ---------------------------------------------------------------------
    Code("A700", "command line", UsageError, None,
         "An option of the command is wrong: the message says which.",
         Example(_net("relu", "[1, 8, 8]"), args=("--max-params", "0")),
         Example(_net("relu", "[1, 8, 8]"), args=("--max-params", "10"))),
    Code("A701", "no such network parameter", UsageError, r"network \S+ has no parameter '",
         "--param (or the editor's directive) sets a parameter that the network does not have.",
         Example("network n(classes = 10) : [1, 8, 8] = flatten; linear classes\n", args=("-p", "clases=5")),
         Example("network n(classes = 10) : [1, 8, 8] = flatten; linear classes\n", args=("-p", "classes=5"))),
    Code("A702", "network parameter without a value", UsageError, r"network \S+ needs a value for its parameter",
         "A network parameter without a default needs a value from --param.",
         Example("network n(classes) : [1, 8, 8] = flatten; linear classes\n", command="compile"),
         Example("network n(classes) : [1, 8, 8] = flatten; linear classes\n", args=("-p", "classes=10"),
                 command="compile")),
    Code("A703", "several networks", UsageError, r"the spec defines several networks",
         "A command that builds one network needs to know which, when the spec defines several.",
         Example(_net("relu", "[1, 8, 8]", "small") + _net("relu; relu", "[1, 8, 8]", "large"), command="compile"),
         Example(_net("relu", "[1, 8, 8]", "small") + _net("relu; relu", "[1, 8, 8]", "large"),
                 args=("--network", "small"), command="compile")),
    Code("A704", "no such network", UsageError, r"no network '",
         "--network names a network that the spec does not define.",
         Example(_net("relu", "[1, 8, 8]", "lenet"), args=("--network", "lenett")),
         Example(_net("relu", "[1, 8, 8]", "lenet"), args=("--network", "lenet"))),
    Code("A705", "no network", ResolveError, r"the spec defines no network",
         "A command that builds a network is given a spec of blocks only.",
         Example("block stem = conv3x3 8; relu\n", command="compile"),
         Example("block stem = conv3x3 8; relu\n" + _net("stem", "[1, 8, 8]"), command="compile")),
    Code("A706", "not a value", UsageError, r"--param \S+: |.* is not a value",
         "A --param value is a whole number, a decimal, true, false or a list of them: -p depths=[3,4,6,3].",
         Example("network n(classes = 10) : [1, 8, 8] = flatten; linear classes\n", args=("-p", "classes=ten")),
         Example("network n(classes = 10) : [1, 8, 8] = flatten; linear classes\n", args=("-p", "classes=10"))),
    Code("A707", "parameter set twice", UsageError, r"--param sets '[^']*' twice",
         "The same parameter is given twice with --param.",
         Example("network n(classes = 10) : [1, 8, 8] = flatten; linear classes\n",
                 args=("-p", "classes=10", "-p", "classes=11")),
         Example("network n(classes = 10) : [1, 8, 8] = flatten; linear classes\n", args=("-p", "classes=11"))),
    # -- backends ------------------------------------------------------------------------------------------
    Code("A800", "building or rendering", BackendError, None,
         "Building the torch module, drawing the diagram or writing an export failed (Graphviz's dot missing, "
         "torch refusing a module): the message names the step and the cause. archdsl check never builds, so "
         "it never reports this.",
         Example(_net("relu", "[1, 8, 8]"), command="graph"), Example(_net("relu", "[1, 8, 8]"), command="graph")),
)

BY_CODE = {code.code: code for code in CODES}
# Rows that read the hint first: they tell apart mistakes that one message covers ("unexpected end of file" with
# a bracket never closed is A004, without one A002).
_MATCH_ORDER = sorted(CODES, key=lambda code: not isinstance(code.when, tuple))
_FAMILIES = {ParseError: "A000", ResolveError: "A100", ShapeError: "A300", LimitError: "A600", UsageError: "A700",
             BackendError: "A800"}


def code_of(err: ArchError) -> str:
    """The code of an error: the first row that matches it, else its family's.

    >>> code_of(ResolveError("unknown layer or block 'conv3x'"))
    'A101'
    """
    for code in _MATCH_ORDER:
        if code.matches(err):
            return code.code
    for family, code in _FAMILIES.items():
        if isinstance(err, family):
            return code
    return "A100"


def explain(code: str) -> str:
    """What ``archdsl explain CODE`` prints: the title, the explanation, a wrong and a fixed example."""
    entry = BY_CODE.get(code.upper())
    if entry is None:
        raise UsageError(f"no error code '{code}'",
                         hint="codes run from A000 to A800; `archdsl check` prints each error's code")
    parts = [f"{entry.code}: {entry.title}", "", entry.explanation, "", "Wrong:", "", _shown(entry.wrong), "",
             "Fixed:", "", _shown(entry.fixed)]
    return "\n".join(parts) + "\n"


def _shown(example: Example) -> str:
    lines = [f"    # {name}\n" + "".join(f"    {line}\n" for line in text.splitlines()) for name, text in example.files.items()]
    if example.files:
        lines.append("    # net.arch")
    lines.extend(f"    {line}" for line in example.text.rstrip("\n").splitlines())
    command = f"archdsl {example.command} net.arch {' '.join(example.args)}".rstrip()
    return "\n".join(line.rstrip("\n") for line in lines) + f"\n\n    $ {command}"


def markdown() -> str:
    """``docs/errors.md``: every code with its explanation and examples."""
    out = ["# Error codes", "",
           "Every diagnostic of `archdsl check` and of the language server carries a stable code; `archdsl explain "
           "CODE` prints its entry here. Codes never change meaning. An error that no row below names gets its "
           "family's code (A000 syntax, A100 names and values, A300 shapes, A600 limits, A700 the command line, "
           "A800 backends). This file is made from `archdsl/codes.py` by `python scripts/make_error_docs.py`.", ""]
    out += [f"- [{c.code}](#{c.code.lower()}): {c.title}" for c in CODES]
    for c in CODES:
        out += ["", f"## {c.code}", "", f"**{c.title}.** {c.explanation}", "", "Wrong:", "",
                _markdown_example(c.wrong), "", "Fixed:", "", _markdown_example(c.fixed)]
    return "\n".join(out) + "\n"


def _markdown_example(example: Example) -> str:
    blocks = [f"`{name}`:\n\n```\n{text.rstrip()}\n```\n" for name, text in example.files.items()]
    command = f"archdsl {example.command} net.arch {' '.join(example.args)}".rstrip()
    blocks.append(f"`net.arch` (`{command}`):\n\n```\n{example.text.rstrip()}\n```")
    return "\n".join(blocks)
