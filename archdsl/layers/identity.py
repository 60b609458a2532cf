"""The identity: ``id``, the shortcut branch of a residual ``add [ ... | id ]``."""

from __future__ import annotations

from archdsl.layers import LayerKind, register, torch_nn


@register
class Identity(LayerKind):
    key = "id"
    known_elsewhere = ("identity",)
    family = "identity"
    doc = "the identity: passes its input on (a shortcut branch, say)"

    def build(self, args, in_shape):
        return torch_nn().Identity()
