"""The base of every IR model: immutable pydantic models, schemas built on first use, made fast.

The front end creates hundreds of nodes per network from values that the parser and the layer rules
already guarantee, so it skips validation: ``make`` sets the fields directly, like pydantic's
``model_construct`` without its per-field alias and default lookups (three times faster, which is a
sixth of the front end's time). ``ir.validate`` checks a whole graph against the schema; the tests
run it on every spec, so a node made with a missing or mistyped field fails there.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict

_setattr = object.__setattr__
_DEFAULTS: dict[type, dict[str, Any]] = {}


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    @classmethod
    def make(cls, **values: Any) -> Self:
        """A node from trusted values: every field without a default must be given; none is validated."""
        defaults = _DEFAULTS.get(cls)
        if defaults is None:
            defaults = _DEFAULTS[cls] = {
                name: field.default for name, field in cls.__pydantic_fields__.items() if not field.is_required()
            }
        if defaults:
            values = {**defaults, **values}
        node = cls.__new__(cls)
        _setattr(node, "__dict__", values)
        _setattr(node, "__pydantic_fields_set__", set(values))
        _setattr(node, "__pydantic_extra__", None)
        _setattr(node, "__pydantic_private__", None)
        return node
