"""onespike: convert trained PyTorch networks to spiking networks and count what they cost."""

from onespike.errors import (
    ChecksumError,
    CodeRangeError,
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    InvalidGraphError,
    MissingFileError,
    OnespikeError,
    ShapeError,
    UnsafeFileError,
    UnsupportedLayerError,
)

__version__ = "0.1.0"

__all__ = [
    "ChecksumError",
    "CodeRangeError",
    "ConfigError",
    "CorruptFileError",
    "DatasetNotFoundError",
    "InvalidGraphError",
    "MissingFileError",
    "OnespikeError",
    "ShapeError",
    "UnsafeFileError",
    "UnsupportedLayerError",
    "__version__",
]
