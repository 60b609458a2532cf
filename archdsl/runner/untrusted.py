"""Reading files that may come from others: run folders, checkpoints, data sets.

Such a file is read only when it is a regular file (``archdsl.reading``: a FIFO would block forever,
``/dev/zero`` never ends) and only up to a size decided before the first byte is read, so that
a hostile or damaged file ends in one clear error rather than a hang or a ``MemoryError``. Records
read from such files are validated by a pydantic schema, and a refusal names the first bad field.

No torch here: run.json is read before anything heavy is imported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import typing
from pathlib import Path
from typing import Annotated, BinaryIO, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from typing_extensions import TypeAliasType

from archdsl import reading
from archdsl.errors import UsageError

CHUNK = 1 << 20

Count = Annotated[int, Field(ge=1)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
# A network parameter's value as JSON holds it: a number, a truth value, or a list of them (`depths=[3, 4, 6, 3]`).
ParamValue = TypeAliasType("ParamValue", Union[bool, int, float, list["ParamValue"]])


class Record(BaseModel):
    """The base of every schema for a file from others: exact types (no "3" for 3, no 64.5 for an
    integer), no unknown fields, frozen once read."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def record_of(cls: type) -> type[Record]:
    """A Record with the fields, types and defaults of a dataclass, so that one place says what the
    fields are (``TrainOptions`` in run.json, ``EpochMetrics`` in a checkpoint's history)."""
    hints = typing.get_type_hints(cls)
    fields = {field.name: (hints[field.name], ... if field.default is dataclasses.MISSING else field.default)
              for field in dataclasses.fields(cls)}
    return create_model(f"{cls.__name__}Record", __base__=Record, **fields)


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading; refused unless it is (or links to) a regular file.

    >>> open_regular(Path("runs/a/run.json")).read()   # doctest: +SKIP
    """
    try:
        return reading.open_regular(path)
    except reading.NotRegularFile as err:
        raise UsageError(f"{path.name} is {err.kind}, not a regular file; refusing to read it", file=str(path),
                         hint="archdsl reads plain files only; replace it with one") from None
    except OSError as err:
        raise UsageError(f"cannot read {path.name}: {err.strerror or err}", file=str(path)) from None


def read_limited(path: Path, limit: int, what: str) -> tuple[bytes, str]:
    """The bytes of a regular file and their SHA-256, refused when there are more than ``limit``.

    The size is checked before reading and again while reading (a file can grow meanwhile); the hash
    is taken chunk by chunk as the bytes arrive. ``what`` says what the file is, for the message.
    """
    with open_regular(path) as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > limit:
            raise too_large(path, size, limit, what)
        digest, chunks, read = hashlib.sha256(), [], 0
        try:
            while chunk := handle.read(min(CHUNK, limit + 1 - read)):
                digest.update(chunk)
                chunks.append(chunk)
                read += len(chunk)
                if read > limit:
                    raise too_large(path, read, limit, what)
        except OSError as err:
            raise UsageError(f"cannot read {path.name}: {err.strerror or err}", file=str(path)) from None
    return b"".join(chunks), digest.hexdigest()


def too_large(path: Path, size: int, limit: int, what: str) -> UsageError:
    return UsageError(f"{path.name} is {size:,} bytes, more than {what} can be ({limit:,})", file=str(path),
                      hint="the file is damaged or not what its name says; refusing to read it")


def schema_error(err: ValidationError) -> str:
    """The first problem pydantic found, in one line: where, what, and the value found there."""
    first = err.errors(include_url=False)[0]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    problem = first["msg"][:1].lower() + first["msg"][1:]
    found = "" if first["type"] in ("missing", "json_invalid") else f" (got {_short(first['input'])})"
    return f"{where}: {problem}{found}" if where else problem + found


def _short(value: object) -> str:
    text = repr(value) if isinstance(value, (str, int, float, bool, type(None))) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."
