"""The errors onespike raises.

Every error derives from :class:`OnespikeError`, so ``except onespike.OnespikeError`` catches
anything the library raises on purpose. Messages name the thing, the place and what to do.
"""

from __future__ import annotations

__all__ = [
    "CalibrationWarning",
    "ChecksumError",
    "CodeRangeError",
    "ConfigError",
    "CorruptFileError",
    "DatasetNotFoundError",
    "InvalidGraphError",
    "MissingFileError",
    "ModelSourceError",
    "OnespikeError",
    "ShapeError",
    "UnsafeFileError",
    "UnsupportedLayerError",
]


class OnespikeError(Exception):
    """Root of every error raised by onespike."""


class CalibrationWarning(UserWarning):
    """Calibration data left populations silent (they never activated), so their scales are
    arbitrary; ``normalize(..., strict=True)`` refuses instead."""


class ConfigError(OnespikeError, ValueError):
    """A configuration value is out of range or inconsistent."""


class UnsupportedLayerError(OnespikeError):
    """Modules or operations in the traced network have no spiking equivalent.

    Attributes:
        places: one line per unsupported place (module path, type and, where one exists, the
            fix); the message lists them all.
    """

    def __init__(self, message: str, *, places: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.places = tuple(places) if places else (message,)


class ModelSourceError(OnespikeError):
    """A user's model source (a Python file and name, a weights file, an ONNX file) cannot be
    used: the file or name does not exist, it does not build an ``nn.Module``, or its weights
    do not fit the architecture."""


class InvalidGraphError(OnespikeError, ValueError):
    """A graph is malformed: non-finite weights, dangling edges, inconsistent shapes."""


class ShapeError(OnespikeError, ValueError):
    """An input tensor does not have the shape the network expects."""


class CodeRangeError(OnespikeError, ValueError):
    """An input value lies outside the range a spike code can represent."""


class DatasetNotFoundError(OnespikeError, FileNotFoundError):
    """A dataset is not in any of the places onespike looks for it."""


class MissingFileError(OnespikeError, FileNotFoundError):
    """A file onespike was asked to read (a model, a checkpoint) does not exist."""


class CorruptFileError(OnespikeError):
    """A file exists but is truncated, malformed or fails a checksum."""


class ChecksumError(CorruptFileError):
    """A downloaded or stored file does not match its expected checksum."""


class UnsafeFileError(CorruptFileError):
    """A file is in a format whose loading could run code (pickle), so onespike refuses it."""
