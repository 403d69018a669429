"""One validation layer for the JSON descriptions onespike reads (``model.json``,
``network.json``): types, finiteness, ranges, sizes and paths are checked before anything is
built from a file, and every problem is a :class:`~onespike.errors.CorruptFileError` that
names the file, the field and the fix.

A :class:`Fields` wraps one JSON object and hands out its values already checked::

    fields = Fields(record, path, "network.json", fix="save the network again")
    steps = fields.integer("steps", low=1, high=limits.max_steps)
    shape = fields.shape("shape", limits.max_values)

Sizes have documented upper bounds (:class:`Limits`); a caller with a really large model
passes its own. The description checksum (:func:`description_sha256`) covers every byte that
defines a network, the JSON as well as the tensors, so an edited description fails as an
edited tensor file does.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from onespike.errors import ChecksumError, CorruptFileError

__all__ = [
    "DEFAULT_LIMITS",
    "Fields",
    "Limits",
    "check_description_sha256",
    "description_sha256",
    "plain_file_name",
]


@dataclass(frozen=True)
class Limits:
    """Upper bounds on the sizes a file may declare (before any memory is allocated).

    They catch a corrupted or hostile description (``hidden=[10**7, 10**7]`` asks for 400 GB)
    with a named error instead of an allocator failure; every one is far above the networks
    onespike is used with. Pass your own to the loaders for really large models.

    Attributes:
        max_width: widest layer (hidden units, channels), and most classes.
        max_values: most values in one population or one input sample (``C * H * W``).
        max_parameters: most parameters in one model.
        max_steps: most time steps a saved configuration may ask for.
        max_layers: most populations or operations in one network description.
    """

    max_width: int = 1 << 16
    max_values: int = 1 << 28
    max_parameters: int = 1 << 31
    max_steps: int = 16_384
    max_layers: int = 10_000


DEFAULT_LIMITS = Limits()
"""The bounds the loaders use unless told otherwise."""


def plain_file_name(value: object, where: str, fix: str) -> str:
    """``value`` as the name of a file inside the description's own directory.

    Absolute paths, ``..``, separators and empty names are refused: a description must never
    point its reader at a file elsewhere on the machine.
    """
    if not isinstance(value, str) or not value:
        raise CorruptFileError(f"{where} must be a file name, got {value!r}; {fix}")
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if (
        posix.is_absolute()
        or windows.is_absolute()
        or windows.drive
        or len(posix.parts) != 1
        or len(windows.parts) != 1
        or value in {".", ".."}
        or "\x00" in value
    ):
        raise CorruptFileError(
            f"{where} names {value!r}, which is not a plain file name inside the directory "
            f"(no absolute paths, separators or '..'); {fix}"
        )
    return value


def description_sha256(record: Mapping[str, Any]) -> str:
    """SHA-256 of a description's canonical JSON, without its ``description_sha256`` field.

    Canonical: keys sorted, no spaces, no NaN; so reformatting the file does not change it,
    editing any value does.
    """
    body = {k: v for k, v in record.items() if k != "description_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def check_description_sha256(record: Mapping[str, Any], path: Path, fix: str) -> None:
    """Refuse a description whose ``description_sha256`` does not match its content."""
    recorded = record.get("description_sha256")
    if not isinstance(recorded, str) or len(recorded) != 64:
        raise CorruptFileError(
            f"{path}: 'description_sha256' must be a 64-character hex string; {fix}"
        )
    try:
        actual = description_sha256(record)
    except ValueError as exc:  # NaN or infinity somewhere
        raise CorruptFileError(f"{path} holds a non-finite number ({exc}); {fix}") from exc
    if actual != recorded.lower():
        raise ChecksumError(
            f"{path} fails its description checksum (recorded {recorded[:12]}..., content "
            f"{actual[:12]}...): the file was edited or damaged after it was saved; {fix}"
        )


class Fields:
    """Checked access to the fields of one JSON object read from ``path``.

    Args:
        record: the object.
        path: the file it came from (named in every error).
        where: the object's place in the file, e.g. ``"populations[3]"``.
        fix: what the user can do, appended to every error.
    """

    def __init__(self, record: object, path: Path, where: str, fix: str) -> None:
        if not isinstance(record, Mapping):
            raise CorruptFileError(
                f"{path}: {where} must be a JSON object, got {type(record).__name__}; {fix}"
            )
        self.record = record
        self.path = path
        self.where = where
        self.fix = fix

    def fail(self, key: str, problem: str) -> CorruptFileError:
        """The error for field ``key``."""
        return CorruptFileError(f"{self.path}: {self.where}.{key} {problem}; {self.fix}")

    def has(self, key: str) -> bool:
        return key in self.record

    def get(self, key: str, default: Any = None) -> Any:
        return self.record.get(key, default)

    def raw(self, key: str) -> Any:
        """The value of a required field, unchecked."""
        if key not in self.record:
            raise self.fail(key, "is missing")
        return self.record[key]

    def child(self, key: str) -> Fields:
        """The object at ``key`` as :class:`Fields`."""
        return Fields(self.raw(key), self.path, f"{self.where}.{key}", self.fix)

    def items(self, key: str, *, most: int) -> list[Any]:
        """The list at ``key`` (at most ``most`` entries)."""
        value = self.raw(key)
        if not isinstance(value, list):
            raise self.fail(key, f"must be a list, got {type(value).__name__}")
        if len(value) > most:
            raise self.fail(key, f"has {len(value)} entries, more than the bound {most}")
        return value

    def string(self, key: str, *, choices: tuple[str, ...] | None = None) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self.fail(key, f"must be a string, got {value!r}")
        if choices is not None and value not in choices:
            raise self.fail(key, f"is {value!r}, not one of {', '.join(map(repr, choices))}")
        return value

    def boolean(self, key: str) -> bool:
        value = self.raw(key)
        if not isinstance(value, bool):
            raise self.fail(key, f"must be true or false, got {value!r}")
        return value

    def integer(self, key: str, *, low: int | None = None, high: int | None = None) -> int:
        value = self.raw(key)
        return self.check_integer(key, value, low=low, high=high)

    def check_integer(
        self, key: str, value: object, *, low: int | None = None, high: int | None = None
    ) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(key, f"must be an integer, got {value!r}")
        if low is not None and value < low:
            raise self.fail(key, f"is {value}, below {low}")
        if high is not None and value > high:
            raise self.fail(key, f"is {value}, above the bound {high}")
        return value

    def number(
        self,
        key: str,
        *,
        low: float | None = None,
        high: float | None = None,
        positive: bool = False,
        optional: bool = False,
    ) -> float | None:
        """A finite number (strings such as ``"NaN"`` refused) in ``[low, high]``."""
        value = self.raw(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"must be a number, got {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise self.fail(key, f"must be finite, got {value!r}")
        if positive and not number > 0:
            raise self.fail(key, f"must be positive, got {value!r}")
        if low is not None and number < low:
            raise self.fail(key, f"is {value}, below {low}")
        if high is not None and number > high:
            raise self.fail(key, f"is {value}, above {high}")
        return number

    def pair(self, key: str, *, low: int = 0, high: int = 1 << 16) -> tuple[int, int]:
        """Two integers (kernel sizes, strides, paddings)."""
        value = self.raw(key)
        if not isinstance(value, list) or len(value) != 2:
            raise self.fail(key, f"must be a list of two integers, got {value!r}")
        first = self.check_integer(key, value[0], low=low, high=high)
        second = self.check_integer(key, value[1], low=low, high=high)
        return (first, second)

    def shape(self, key: str, max_values: int) -> tuple[int, ...]:
        """A tensor shape of positive integers holding at most ``max_values`` values."""
        value = self.raw(key)
        if not isinstance(value, list) or not 1 <= len(value) <= 8:
            raise self.fail(key, f"must be a list of 1 to 8 positive integers, got {value!r}")
        dims = tuple(self.check_integer(key, d, low=1, high=max_values) for d in value)
        if math.prod(dims) > max_values:
            raise self.fail(
                key,
                f"declares {math.prod(dims)} values, more than the bound {max_values} (pass "
                "limits=onespike.validate.Limits(max_values=...) for a larger network)",
            )
        return dims

    def sha256(self, key: str) -> str:
        value = self.raw(key)
        if (
            not isinstance(value, str)
            or len(value) != 64
            or any(c not in "0123456789abcdefABCDEF" for c in value)
        ):
            raise self.fail(key, "must be a 64-character hex string")
        return value.lower()
