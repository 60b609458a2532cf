"""Static shape arithmetic: the rules that convolution, pooling and the joins share.

Shapes leave the batch out: ``(C, H, W)`` for images, ``(N,)`` for vectors, ``Tokens((L, D))`` for a sequence
of L tokens of D features and ``Tokens((H, W, D))`` for tokens on an H×W grid (``ir.Tokens``). Rules ask
``layout`` what a shape holds, never its rank. Every rule here works on plain integers; nothing is allocated or
run. A rule that cannot apply raises ``LayerError`` with a message a person can act on; ``resolve`` attaches the
place.
"""

from __future__ import annotations

from archdsl.ir import Shape, Tokens, format_shape


class LayerError(Exception):
    """Raised by shape and argument rules; ``resolve`` turns it into an ArchError at the layer's span.

    ``arg`` names the argument at fault, so the caret can point at it.
    """

    def __init__(self, message: str, *, hint: str | None = None, arg: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.arg = arg


def show(shape: Shape) -> str:
    """``64×56×56``: how shapes read in messages."""
    return format_shape(shape, "×")


def layout(shape: Shape) -> str:
    """What a shape holds: ``"image"`` (C×H×W), ``"vector"`` or ``"tokens"`` (L×D, on a grid or not)."""
    if isinstance(shape, Tokens):
        return "tokens"
    return "image" if len(shape) == 3 else "vector"


def described(shape: Shape) -> str:
    """A shape as a message names it: ``64×56×56``, ``10``, ``197×768 tokens``, ``(56×56)×96 tokens``."""
    return f"{show(shape)} tokens" if isinstance(shape, Tokens) else show(shape)


def channels(shape: Shape):
    """What per-channel layers act on: an image's C, a vector's N, the D features of each token."""
    return shape.features if isinstance(shape, Tokens) else shape[0]


def spatial_sizes(shape: Shape) -> tuple:
    """The sizes that follow the input's height and width: an image's H and W, the grid of tokens on one."""
    if isinstance(shape, Tokens):
        return shape.grid or ()
    return tuple(shape[1:]) if layout(shape) == "image" else ()


def to_image_hint(kind: str, shape: Shape) -> str | None:
    """What makes ``shape`` the image that ``kind`` needs: a layer before flatten, untokens for tokens."""
    if isinstance(shape, Tokens):
        if shape.grid is not None:
            return f"'untokens' turns the tokens back into a {show((shape.features, *shape.grid))} image"
        return "'untokens H W' turns L = H·W tokens back into a D×H×W image"
    return f"{kind} must come before 'flatten'" if layout(shape) == "vector" else None


def require_rank(shape: Shape, rank: int, kind: str, what: str) -> Shape:
    """``shape`` when it is an image (``rank`` 3) or a vector (1), else the error saying what ``kind`` takes."""
    if layout(shape) != ("image" if rank == 3 else "vector"):
        hint = to_image_hint(kind, shape) if rank == 3 else None
        raise LayerError(f"{kind} takes {what}, but its input is {described(shape)}", hint=hint)
    return shape


def require_image_or_vector(shape: Shape, kind: str) -> Shape:
    """``shape`` when it is an image or a vector (what channel-wise layers such as ``bn`` take), else the error."""
    if isinstance(shape, Tokens):
        raise LayerError(f"{kind} takes a vector or a C×H×W image, but its input is {described(shape)}",
                         hint=to_image_hint(kind, shape))
    return shape


def require_tokens(shape: Shape, kind: str, grid: bool = False) -> Tokens:
    """``shape`` when it is tokens (on a grid, with ``grid``), else the error naming the layer that converts."""
    if not isinstance(shape, Tokens):
        if layout(shape) == "image":
            hint = f"'tokens' turns a C×H×W image into H·W tokens of C features; put it before {kind}"
        else:
            hint = f"{kind} must come before what makes the vector ('flatten', 'token I' or 'tokenmean')"
        what = "tokens on an H×W grid" if grid else "tokens L×D"
        raise LayerError(f"{kind} takes {what}, but its input is {described(shape)}", hint=hint)
    if grid and shape.grid is None:
        raise LayerError(f"{kind} takes tokens on an H×W grid, but its input is {described(shape)}, which lie on none",
                         hint="tokens made from an image by 'tokens' lie on its H×W grid, until a class token "
                              "('clstoken') makes them a plain sequence")
    return shape


def pair(value: int | tuple[int, int]) -> tuple[int, int]:
    """A window's number per axis, height then width: ``3`` -> ``(3, 3)``; ``(1, 7)`` stays."""
    return value if isinstance(value, tuple) else (value, value)


def pooled_size(size: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    """PyTorch's output size along one axis: floor((size + 2p - d(k-1) - 1) / s) + 1.

    With ``ceil`` (torch's ceil_mode) it is ceil(...) + 1 instead, less one where the last window would
    start in the right padding: every window starts inside the input or its left padding."""
    if not ceil:
        return (size + 2 * p - d * (k - 1) - 1) // s + 1
    reach = d * (k - 1) + 1
    # The last start is the earlier of size + 2p - reach + s - 1 (ceil's) and size + p - 1 (inside); one
    # floor says both, because padding below the window (p < reach) puts them less than s apart.
    return (size + p - 1 + min(p + s - reach, 0)) // s + 1


def spatial(kind: str, hw: tuple[int, int], k, s, p, d, ceil: bool = False) -> tuple[int, int]:
    """The H×W after a window of size k, stride s, padding p, dilation d, each a number or a pair
    (height, width), and ``ceil`` for torch's ceil_mode; an error when the window does not fit."""
    k, s, p, d = pair(k), pair(s), pair(p), pair(d)
    out = tuple(pooled_size(hw[i], k[i], s[i], p[i], d[i], ceil) for i in range(2))
    # A symbolic size is checked later, as the constraint that the output is at least 1 (--min-input).
    if any(isinstance(size, int) and size < 1 for size in out):
        reach = tuple(d[i] * (k[i] - 1) + 1 for i in range(2))
        padded = tuple(hw[i] + 2 * p[i] for i in range(2))
        window = show(k) + (f" (dilated to {show(reach)})" if d != (1, 1) else "")
        raise LayerError(
            f"{kind} window {window} is larger than its input {show(hw)}" + (f" padded to {show(padded)}" if p != (0, 0) else ""),
            hint="a window must fit in its padded input: use a larger input, more padding, a smaller window, "
                 "or fewer downsampling layers before it",
        )
    return out


def join(op: str, shapes: list[Shape]) -> tuple[Shape, str | None]:
    """The shape after ``concat`` or ``add`` of branch outputs, or the reason they do not join.

    Returns ``(shape, None)`` when they join and ``(first, message)`` when they do not.
    """
    first = shapes[0]
    if op == "mul":
        result = first
        for index, shape in enumerate(shapes[1:], start=2):
            broadcast = _broadcast(result, shape)
            if broadcast is None:
                return first, (f"mul needs shapes that broadcast (equal sizes, or 1 on one side), but branch 1 gives "
                               f"{described(first)} and branch {index} gives {described(shape)}")
            result = broadcast
        return result, None
    if op == "add":
        for index, shape in enumerate(shapes[1:], start=2):
            if shape != first:
                return first, (f"add needs equal shapes, but branch 1 gives {described(first)} and branch {index} gives "
                               f"{described(shape)}")
        return first, None
    for index, shape in enumerate(shapes, start=1):
        if isinstance(shape, Tokens):
            return first, f"concat joins images or vectors on their channels, but branch {index} gives {described(shape)}"
    for index, shape in enumerate(shapes[1:], start=2):
        if len(shape) != len(first):
            return first, f"concat joins on channels, but branch 1 gives {show(first)} and branch {index} gives {show(shape)}"
        if shape[1:] != first[1:]:
            return first, (
                f"concat joins on channels and needs equal H×W, but branch 1 gives {show(first)}"
                f" and branch {index} gives {show(shape)}"
            )
    return (sum(s[0] for s in shapes), *first[1:]), None


def _broadcast(left: Shape, right: Shape) -> Shape | None:
    """The shape of ``left * right`` in torch, for tensors of one rank (C×1×1 times C×H×W is C×H×W), or
    None when they do not broadcast."""
    if len(left) != len(right) or isinstance(left, Tokens) != isinstance(right, Tokens):
        return None
    out = []
    for a, b in zip(left, right):
        if a == b or b == 1:
            out.append(a)
        elif a == 1:
            out.append(b)
        else:
            return None
    return Tokens(out) if isinstance(left, Tokens) else tuple(out)


def mismatch_hint(op: str, shapes: list[Shape]) -> str:
    """What to change so that branches join: the padding that closes a constant gap, or the stride."""
    first = shapes[0]
    if any(isinstance(shape, Tokens) for shape in shapes):
        return _tokens_mismatch_hint(op, shapes)
    if op == "mul":
        for index, shape in enumerate(shapes[1:], start=2):
            if len(shape) == len(first) and shape and shape[0] != first[0]:
                return (f"give the branches the same channels (branch 1 has {first[0]}, branch {index} has "
                        f"{shape[0]}): a gate ends in conv1x1 in.c")
        return "a gate branch that scales each channel ends in C×1×1: gap; conv1x1 ...; sigmoid"
    for index, shape in enumerate(shapes[1:], start=2):
        if shape == first or (op == "concat" and shape[1:] == first[1:]):
            continue
        if len(shape) != len(first):
            return "the branches end in different ranks: flatten both or neither"
        if shape[1:] == first[1:]:
            return f"give the branches the same output channels (branch 1 has {first[0]}, branch {index} has {shape[0]})"
        gap = first[1] - shape[1]
        concrete = isinstance(first[1], int) and isinstance(shape[1], int)
        if concrete and min(first[1], shape[1]) * 2 <= max(first[1], shape[1]) + 1:
            # One side is about half the other or less: a stride, not a padding, makes the difference.
            larger = index if gap < 0 else 1
            stride = round(max(first[1], shape[1]) / min(first[1], shape[1]))
            return f"branch {larger} does not downsample like the other: give it the same stride (s={stride})"
        if isinstance(gap, int):
            side = "smaller" if gap > 0 else "larger"
            fix = f": padding {abs(gap) // 2} {'more' if gap > 0 else 'less'} on it fixes it" if gap % 2 == 0 else ""
            return f"branch {index} is {abs(gap)} pixel{'s' if abs(gap) != 1 else ''} {side} than branch 1{fix}"
        where = _where_they_differ(first, shape)
        if where:
            return f"their sizes differ for some inputs ({where}): give the branches the same kernel, stride and padding"
        return "the branches downsample differently: give them the same stride"
    return "make the branches' shapes equal"


def _tokens_mismatch_hint(op: str, shapes: list[Shape]) -> str:
    """What to change where tokens meet at a join: tokens join with add (or mul), each branch tokens alike."""
    if op == "concat":
        return "tokens join with add [ ... | id ] (a residual); concat joins images and vectors"
    if not all(isinstance(shape, Tokens) for shape in shapes):
        return "every branch must give tokens, or every branch an image or a vector"
    first = shapes[0]
    for index, shape in enumerate(shapes[1:], start=2):
        if shape.features != first.features:
            return (f"give the branches the same features (branch 1 has {first.features}, branch {index} has "
                    f"{shape.features}): a residual branch ends in linear in.c")
    return "give the branches the same number of tokens, on the same grid"


def _where_they_differ(first: Shape, other: Shape) -> str:
    """For symbolic sizes: an input size at which the two differ, and one at which they agree, if any."""
    from archdsl.symbolic import Sym

    for a, b in zip(first[1:], other[1:]):
        if a == b or not isinstance(a - b, Sym):
            continue
        (name,) = (a - b).symbols() if len((a - b).symbols()) == 1 else (None,)
        if name is None:
            return ""
        def at(dim, v):
            return dim.evaluate({name: v}) if isinstance(dim, Sym) else dim
        valid = [v for v in range(1, 4097) if min(at(a, v), at(b, v)) >= 1]
        differ = next((v for v in valid if at(a, v) != at(b, v)), None)
        agree = next((v for v in valid if at(a, v) == at(b, v)), None)
        if differ is None:
            return ""
        text = f"at {name} = {differ} branch 1 has {at(a, differ)} and the other {at(b, differ)}"
        return text + (f"; they agree at {name} = {agree}" if agree else "")
    return ""
