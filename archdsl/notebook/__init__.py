"""archdsl in Jupyter, besides the displays of a network and its summary (``CompiledNetwork._repr_mimebundle_``,
``summary.Summary``), which need nothing from here:

- ``%load_ext archdsl`` registers the ``%%arch`` cell magic (magic.py);
- ``train(net, epochs=10, lr=0.9)`` trains with a live progress bar and learning curves, and returns a result
  that displays as its metrics table beside the curves (training.py: the train extra).

These modules import IPython; ``import archdsl`` imports neither them nor IPython.
"""

from __future__ import annotations


def load_ipython_extension(ipython) -> None:
    """``%load_ext archdsl``: the ``%%arch`` cell magic."""
    from archdsl.notebook.magic import arch

    ipython.register_magic_function(arch, magic_kind="cell", magic_name="arch")


def __getattr__(name: str):
    # training.py imports torch: looked up when asked for, where a missing train extra is one error naming it.
    if name == "train":
        from archdsl.extras import required

        with required():
            from archdsl.notebook.training import train
        return train
    raise AttributeError(f"module 'archdsl.notebook' has no attribute '{name}'")
