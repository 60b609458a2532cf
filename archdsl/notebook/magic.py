"""The ``%%arch`` cell magic, which ``%load_ext archdsl`` registers; its cell is a spec::

    %%arch -p classes=10 --graph
    block vgg(n, c) = repeat n <conv3x3 c; relu>; maxpool2
    network smallvgg(classes = 10) : [1, 28, 28] -> [classes] =
        vgg(1, 16); vgg(2, 32); flatten; linear classes

checks it, displays the network (the depth-1 summary beside its diagram) and binds it to a variable of the
network's name (``smallvgg``) or the one named on the magic's line.
"""

from __future__ import annotations

from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

CELL = "<cell>"  # the spec's name in diagnostics; its imports are relative to the notebook's folder


@magic_arguments()
@argument("name", nargs="?", help="The variable to bind the network to (default: the network's name).")
@argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
          help="Set a network parameter (repeatable), as on the command line.")
@argument("-n", "--network", metavar="NAME", help="Which network, when the cell defines several.")
@argument("--input", metavar="CxHxW", help="Override the declared input shape, e.g. 3x224x224.")
@argument("--depth", type=int, metavar="N",
          help="Show the summary (and with --graph the diagram) N levels of blocks deep.")
@argument("--graph", action="store_true", help="Also draw the network's diagram, as archdsl graph does.")
def arch(line: str, cell: str) -> None:
    """Compile the cell as a spec, display the network and bind it to a variable.

    Without ``--depth`` the display is the network's own (the summary at depth 1 beside its diagram); with it,
    the summary at that depth. ``--graph`` then draws the whole network (``--depth``: down to N levels).
    """
    from IPython import get_ipython
    from IPython.display import SVG, display

    from archdsl.arguments import parse_params, parse_shape
    from archdsl.compiled import loads
    from archdsl.errors import UsageError
    from archdsl.graphviz_backend import render

    args = parse_argstring(arch, line)
    if args.depth is not None and args.depth < 1:
        raise UsageError(f"--depth must be at least 1, not {args.depth}", hint="leave it out for the network's display")
    net = loads(cell, network=args.network, input_shape=parse_shape(args.input), path=CELL,
                **parse_params(args.param))
    get_ipython().user_ns[args.name or net.name] = net
    display(net if args.depth is None else net.summary(depth=args.depth))
    if args.graph:
        display(SVG(render(net.graph(depth=args.depth), "svg")))

