"""Datasets: the embedded ``digits`` default, MNIST, Fashion-MNIST and CIFAR-10.

Every dataset is returned as a :class:`Dataset`: float32 images ``(N, C, H, W)`` in ``[0, 1]``
and int64 labels ``(N,)``, held in memory.

``digits`` ships with scikit-learn and needs no files. The other datasets are read from their
canonical files (MNIST and Fashion-MNIST: the four IDX files, gzipped or raw; CIFAR-10: the
python-pickle batches of ``cifar-10-batches-py``, unpickled with a loader that only rebuilds
numpy arrays).

Lookup order:
    For each base directory, in this order,

    1. the explicit ``data_dir`` argument (CLI ``--data-dir``),
    2. ``$ONESPIKE_DATA``,
    3. for ``fashion-mnist`` only, ``/usr/share/datasets/fashion-mnist`` (where Debian's
       ``dataset-fashion-mnist`` package puts the files),
    4. the user cache: ``$ONESPIKE_CACHE``, else ``$XDG_CACHE_HOME/onespike``, else
       ``~/.cache/onespike`` (where :func:`download_dataset` writes),

    onespike looks in ``base/<name>/`` and then in ``base/`` itself; for ``cifar10`` it also
    looks in ``base/cifar10/cifar-10-batches-py/`` and ``base/cifar-10-batches-py/``.
    :func:`search_paths` lists these directories. The first directory that holds every file of
    the requested split wins. If none does, :class:`~onespike.errors.DatasetNotFoundError`
    lists every directory looked in and the ways to provide the data.

Nothing touches the network unless asked: ``download=True`` (CLI ``--download``) or
:func:`download_dataset` fetch the canonical files over HTTPS into the user cache and verify
their checksums before anything is written.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import importlib
import io
import os
import pickle
import tarfile
import urllib.request
import warnings
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from onespike._fs import atomic_write_bytes
from onespike.errors import (
    ChecksumError,
    ConfigError,
    CorruptFileError,
    DatasetNotFoundError,
    ShapeError,
    UnsafeFileError,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "Dataset",
    "batches",
    "download_dataset",
    "load_dataset",
    "random_flip",
    "random_shift",
    "search_paths",
    "split_validation",
    "user_cache_dir",
]

DATASETS = ("digits", "mnist", "fashion-mnist", "cifar10")
"""Names accepted by :func:`load_dataset`."""

SPLITS = ("train", "test")
"""Splits accepted by :func:`load_dataset`."""

DATA_ENV = "ONESPIKE_DATA"
CACHE_ENV = "ONESPIKE_CACHE"
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")

_NUM_CLASSES = {"digits": 10, "mnist": 10, "fashion-mnist": 10, "cifar10": 10}

# digits: a fixed permutation from default_rng(0); its last _DIGITS_TEST samples are "test".
_DIGITS_SEED = 0
_DIGITS_TEST = 360

_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_IDX_IMAGE_SIZE = (28, 28)

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CIFAR_META = "batches.meta"
_CIFAR_ROW = 3 * 32 * 32

# Caps against decompression bombs and runaway downloads (CIFAR-10's tarball is 170 MB).
_MAX_DECOMPRESSED_BYTES = 1 << 30
_MAX_DOWNLOAD_BYTES = 1 << 30
_DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Dataset:
    """An image classification split held in memory.

    Attributes:
        name: dataset name, e.g. ``"mnist"``.
        split: ``"train"`` or ``"test"`` (``"validation"`` for a part cut by
            :func:`split_validation`).
        images: float32 tensor ``(N, C, H, W)`` with values in ``[0, 1]``.
        labels: int64 tensor ``(N,)``.
        num_classes: number of classes.
    """

    name: str
    split: str
    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    def __post_init__(self) -> None:
        images, labels = self.images, self.labels
        if images.ndim < 1 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise ShapeError(
                f"dataset {self.name!r} ({self.split}): {tuple(images.shape)} images but "
                f"{tuple(labels.shape)} labels; images and labels need one row per sample. "
                "Slice both together (e.g. ds.head(n))"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int) -> Dataset:
        """The first ``n`` samples (all of them if there are fewer), images and labels
        together."""
        return replace(self, images=self.images[:n], labels=self.labels[:n])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """The shape ``(C, H, W)`` of one image."""
        c, h, w = self.images.shape[1:]
        return int(c), int(h), int(w)


# --------------------------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of: {', '.join(SPLITS)}")


def _check_limit(limit: int | None) -> None:
    if limit is None:
        return
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 1:
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")


# --------------------------------------------------------------------------------------------
# Where datasets are looked for
# --------------------------------------------------------------------------------------------


def user_cache_dir() -> Path:
    """Return the user cache directory that downloads go to.

    Returns:
        ``$ONESPIKE_CACHE`` if set, else ``$XDG_CACHE_HOME/onespike``, else
        ``~/.cache/onespike``.
    """
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return _absolute(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return _absolute(Path(xdg).expanduser() / "onespike")
    return _absolute(Path.home() / ".cache" / "onespike")


def _absolute(path: str | os.PathLike[str]) -> Path:
    """Make ``path`` absolute with ``~`` expanded and ``..`` folded, without following links."""
    return Path(os.path.abspath(os.path.expanduser(os.fspath(path))))


def _base_dirs(name: str, data_dir: str | os.PathLike[str] | None) -> list[Path]:
    bases: list[Path] = []
    if data_dir is not None:
        bases.append(_absolute(data_dir))
    env = os.environ.get(DATA_ENV)
    if env:
        bases.append(_absolute(env))
    if name == "fashion-mnist":
        bases.append(DEBIAN_FASHION_DIR)
    bases.append(user_cache_dir())
    return bases


def search_paths(name: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """List the directories searched for a dataset, in lookup order.

    Args:
        name: one of :data:`DATASETS`.
        data_dir: the explicit data directory, searched first.

    Returns:
        Directories without duplicates, in the order they are tried. Empty for ``digits``,
        which is bundled with scikit-learn.
    """
    _check_name(name)
    if name == "digits":
        return []
    paths: list[Path] = []
    for base in _base_dirs(name, data_dir):
        if name == "cifar10":
            candidates = [
                base / name,
                base / name / _CIFAR_FOLDER,
                base,
                base / _CIFAR_FOLDER,
            ]
        else:
            candidates = [base / name, base]
        for path in candidates:
            if path not in paths:
                paths.append(path)
    return paths


def _required_files(name: str, split: str) -> tuple[str, ...]:
    return _CIFAR_FILES[split] if name == "cifar10" else _IDX_FILES[split]


def _find_file(directory: Path, name: str, base_name: str) -> Path | None:
    # IDX files may be raw or gzipped; the raw one is preferred as it is faster to read.
    names = (base_name,) if name == "cifar10" else (base_name, base_name + ".gz")
    for candidate in names:
        path = directory / candidate
        if path.is_file():
            return path
    return None


def _locate(
    name: str, split: str, data_dir: str | os.PathLike[str] | None
) -> tuple[list[Path] | None, list[tuple[Path, str]]]:
    """Find the split's files; also return each searched directory with what it lacked."""
    required = _required_files(name, split)
    searched: list[tuple[Path, str]] = []
    for directory in search_paths(name, data_dir):
        if not directory.is_dir():
            searched.append((directory, "no such directory"))
            continue
        found = [_find_file(directory, name, f) for f in required]
        if all(path is not None for path in found):
            return [path for path in found if path is not None], searched
        missing = [f for f, path in zip(required, found, strict=True) if path is None]
        if len(missing) == len(required):
            searched.append((directory, "none of the files"))
        else:
            searched.append((directory, "missing " + ", ".join(missing)))
    return None, searched


def _provide_hint(name: str) -> str:
    if name == "cifar10":
        wanted = f"the folder {_CIFAR_FOLDER}/ (data_batch_1..5, test_batch)"
    else:
        files = [f for pair in _IDX_FILES.values() for f in pair]
        wanted = "the IDX files " + ", ".join(f + "[.gz]" for f in files)
    lines = [
        f"Provide {wanted} by one of:",
        f"  - pass --data-dir DIR (Python: data_dir=DIR) with the files in DIR or DIR/{name}/",
        f"  - set {DATA_ENV}=DIR",
    ]
    if name == "fashion-mnist":
        lines.append(
            "  - on Debian: apt-get install dataset-fashion-mnist "
            f"(installs them in {DEBIAN_FASHION_DIR})"
        )
    lines.append(
        f"  - download=True (CLI --download) where a network exists; files go to "
        f"{user_cache_dir() / name}"
    )
    return "\n".join(lines)


def _not_found_message(name: str, split: str, searched: Sequence[tuple[Path, str]]) -> str:
    lines = [f"dataset {name!r} ({split} split) not found. Looked in:"]
    lines += [f"  {path}  ({why})" for path, why in searched]
    lines.append(_provide_hint(name))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    download: bool = False,
    limit: int | None = None,
) -> Dataset:
    """Load one split of a dataset into memory.

    ``digits`` is scikit-learn's bundled 8x8 digits (1,797 images, pixel values divided by 16).
    Its split is deterministic: ``numpy.random.default_rng(0).permutation(1797)`` orders the
    samples, the last 360 (about 20 %) are ``"test"`` and the first 1,437 ``"train"``.
    The other datasets are looked up as the module docstring describes.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        data_dir: a directory searched before all others.
        download: if the files are not found, download them into the user cache first.
        limit: keep only the first ``limit`` samples.

    Returns:
        The split as a :class:`Dataset`.

    Raises:
        ConfigError: unknown name or split, or a bad ``limit``.
        DatasetNotFoundError: the files are in none of the searched directories.
        CorruptFileError: a file is truncated or malformed.
        UnsafeFileError: a CIFAR-10 pickle asks for anything but numpy arrays.
    """
    _check_name(name)
    _check_split(split)
    _check_limit(limit)
    if name == "digits":
        return _load_digits(split, limit)
    files, searched = _locate(name, split, data_dir)
    if files is None and download:
        download_dataset(name)
        files, searched = _locate(name, split, data_dir)
    if files is None:
        raise DatasetNotFoundError(_not_found_message(name, split, searched))
    if name == "cifar10":
        return _load_cifar(files, split, limit)
    return _load_idx(name, split, files[0], files[1], limit)


def _images_tensor(pixels: np.ndarray, scale: float) -> torch.Tensor:
    out = pixels.astype(np.float32)
    out /= np.float32(scale)
    return torch.from_numpy(out)


def _labels_tensor(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(labels.astype(np.int64))


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    pixels = np.asarray(bunch.data, dtype=np.float32).reshape(-1, 1, 8, 8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(_DIGITS_SEED).permutation(labels.shape[0])
    pixels, labels = pixels[order], labels[order]
    pixels.flags.writeable = False
    labels.flags.writeable = False
    return pixels, labels


def _load_digits(split: str, limit: int | None) -> Dataset:
    pixels, labels = _digits_arrays()
    cut = labels.shape[0] - _DIGITS_TEST
    part = slice(0, cut) if split == "train" else slice(cut, None)
    pixels, labels = pixels[part][:limit], labels[part][:limit]
    return Dataset("digits", split, _images_tensor(pixels, 16), _labels_tensor(labels), 10)


def _gunzip(data: bytes, source: str) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            out = stream.read(_MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(f"{source} is not a valid gzip file: {exc}") from exc
    if len(out) > _MAX_DECOMPRESSED_BYTES:
        raise CorruptFileError(
            f"{source} decompresses to more than {_MAX_DECOMPRESSED_BYTES} bytes; refusing it"
        )
    return out


def _read_file(path: Path) -> bytes:
    data = path.read_bytes()
    return _gunzip(data, str(path)) if path.name.endswith(".gz") else data


def _parse_idx(data: bytes, source: str, magic: int) -> np.ndarray:
    """Parse IDX bytes into a read-only uint8 array, checking magic number and length."""
    kind = "images" if magic == _IDX_IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise CorruptFileError(
            f"{source} is truncated: {len(data)} bytes, too short for an IDX header"
        )
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise CorruptFileError(
            f"{source} has magic number {found} (0x{found:08x}), expected {magic} "
            f"(0x{magic:08x}) for an IDX {kind} file"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise CorruptFileError(
            f"{source} is truncated: {len(data)} bytes, its header alone needs {header}"
        )
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) < expected:
        raise CorruptFileError(
            f"{source} is truncated: its header declares {kind} of shape {dims}, which needs "
            f"{expected} bytes, but the file has {len(data)}"
        )
    if len(data) > expected:
        raise CorruptFileError(
            f"{source} has {len(data) - expected} bytes beyond the {expected} its header "
            f"(shape {dims}) declares"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def _check_idx_pair(
    images: np.ndarray, labels: np.ndarray, image_source: str, label_source: str
) -> None:
    if images.shape[1:] != _IDX_IMAGE_SIZE:
        h, w = images.shape[1:]
        raise CorruptFileError(
            f"{image_source} holds {h}x{w} images, expected "
            f"{_IDX_IMAGE_SIZE[0]}x{_IDX_IMAGE_SIZE[1]}"
        )
    if images.shape[0] != labels.shape[0]:
        raise CorruptFileError(
            f"{image_source} holds {images.shape[0]} images but {label_source} holds "
            f"{labels.shape[0]} labels"
        )
    if labels.size and int(labels.max()) >= 10:
        raise CorruptFileError(
            f"{label_source} holds label {int(labels.max())}, outside the classes 0..9"
        )


def _load_idx(
    name: str, split: str, image_path: Path, label_path: Path, limit: int | None
) -> Dataset:
    images = _parse_idx(_read_file(image_path), str(image_path), _IDX_IMAGES_MAGIC)
    labels = _parse_idx(_read_file(label_path), str(label_path), _IDX_LABELS_MAGIC)
    _check_idx_pair(images, labels, str(image_path), str(label_path))
    images, labels = images[:limit], labels[:limit]
    return Dataset(
        name,
        split,
        _images_tensor(images[:, None, :, :], 255),
        _labels_tensor(labels),
        _NUM_CLASSES[name],
    )


# --------------------------------------------------------------------------------------------
# CIFAR-10 pickles, unpickled safely
# --------------------------------------------------------------------------------------------


def _numpy_global(module: str, name: str) -> Any:
    """Resolve a numpy global from an allow-listed pickle reference."""
    # numpy 2 moved numpy.core to numpy._core; a pickle may name either.
    tail = module.split(".", 2)[-1]  # "multiarray" or "numeric"
    for package in ("numpy._core", "numpy.core"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                mod = importlib.import_module(f"{package}.{tail}")
            return getattr(mod, name)
        except (ImportError, AttributeError):
            continue
    raise UnsafeFileError(f"numpy does not provide {module}.{name}")  # pragma: no cover


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """Stand-in for ``_codecs.encode`` as protocol-2 pickles use it to rebuild bytes."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafeFileError(f"pickle asks to encode with {encoding!r}; only latin1 is allowed")
    return text.encode("latin1")


_PICKLE_NUMPY_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }
)


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and plain containers, and nothing else."""

    def __init__(self, stream: IO[bytes], source: str) -> None:
        super().__init__(stream, encoding="latin1")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        """Return an allow-listed global; refuse everything else with UnsafeFileError.

        Args:
            module: module named by the pickle.
            name: attribute named by the pickle.

        Returns:
            The numpy function or type (or a latin1-only stand-in for ``_codecs.encode``).
        """
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        if (module, name) in _PICKLE_NUMPY_GLOBALS:
            return _numpy_global(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise UnsafeFileError(
            f"{self.source} asks the unpickler for {module}.{name}; a CIFAR-10 batch only "
            "needs numpy arrays, so onespike refuses to load it (unpickling it could run code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        """Refuse persistent references, which a CIFAR-10 batch never has.

        Args:
            pid: the persistent id named by the pickle.

        Returns:
            Never returns.
        """
        raise UnsafeFileError(f"{self.source} holds a persistent reference; refusing it")


def _safe_unpickle(data: bytes, source: str) -> Any:
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), source).load()
    except UnsafeFileError:
        raise
    except Exception as exc:
        raise CorruptFileError(f"{source} is not a readable pickle: {exc}") from exc


def _field(batch: dict[Any, Any], key: str) -> Any:
    if key in batch:
        return batch[key]
    if key.encode() in batch:
        return batch[key.encode()]
    raise KeyError(key)


def _parse_cifar_batch(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    """Unpickle one CIFAR-10 batch into uint8 pixels ``(N, 3072)`` and int64 labels ``(N,)``."""
    batch = _safe_unpickle(data, source)
    if not isinstance(batch, dict):
        raise CorruptFileError(f"{source} holds a {type(batch).__name__}, expected a dict")
    try:
        pixels, labels = _field(batch, "data"), _field(batch, "labels")
    except KeyError as exc:
        raise CorruptFileError(f"{source} has no {exc.args[0]!r} entry") from exc
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.ndim != 2:
        raise CorruptFileError(f"{source}: 'data' is not a 2-D uint8 array")
    if pixels.shape[1] != _CIFAR_ROW:
        raise CorruptFileError(
            f"{source}: 'data' rows have {pixels.shape[1]} values, expected {_CIFAR_ROW}"
        )
    try:
        label_array = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptFileError(f"{source}: 'labels' are not integers: {exc}") from exc
    if label_array.shape != (pixels.shape[0],):
        raise CorruptFileError(
            f"{source} has {pixels.shape[0]} images but labels of shape {label_array.shape}"
        )
    if label_array.size and (label_array.min() < 0 or label_array.max() > 9):
        raise CorruptFileError(f"{source} holds labels outside the classes 0..9")
    return pixels, label_array


def _load_cifar(files: Sequence[Path], split: str, limit: int | None) -> Dataset:
    pixel_parts: list[np.ndarray] = []
    label_parts: list[np.ndarray] = []
    count = 0
    for path in files:
        pixels, labels = _parse_cifar_batch(path.read_bytes(), str(path))
        pixel_parts.append(pixels)
        label_parts.append(labels)
        count += labels.shape[0]
        if limit is not None and count >= limit:
            break
    pixels = np.concatenate(pixel_parts)[:limit]
    labels = np.concatenate(label_parts)[:limit]
    images = _images_tensor(pixels.reshape(-1, 3, 32, 32), 255)
    return Dataset("cifar10", split, images, _labels_tensor(labels), 10)


# --------------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RemoteFile:
    """A file as served: its name, and the checksums known for it (None: unknown)."""

    name: str
    sha256: str | None = None  # of the decompressed content
    md5: str | None = None  # of the bytes as served, as published by the dataset's authors


@dataclass(frozen=True)
class _Remote:
    mirrors: tuple[str, ...]
    files: tuple[_RemoteFile, ...]


_REMOTE: dict[str, _Remote] = {
    "mnist": _Remote(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        files=(
            _RemoteFile(
                "train-images-idx3-ubyte.gz",
                sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            ),
            _RemoteFile(
                "train-labels-idx1-ubyte.gz",
                sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            _RemoteFile(
                "t10k-images-idx3-ubyte.gz",
                sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            ),
            _RemoteFile(
                "t10k-labels-idx1-ubyte.gz",
                sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
        ),
    ),
    # MD5 sums of the .gz files as published in Zalando Research's fashion-mnist README.
    "fashion-mnist": _Remote(
        mirrors=(
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ),
        files=(
            _RemoteFile("train-images-idx3-ubyte.gz", md5="8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
            _RemoteFile("train-labels-idx1-ubyte.gz", md5="25c81989df183df01b3e8a0aad5dffbe"),
            _RemoteFile("t10k-images-idx3-ubyte.gz", md5="bef4ecab320f06d8554ea6380940ec79"),
            _RemoteFile("t10k-labels-idx1-ubyte.gz", md5="bb300cfdad3c16e7a12a480ee83cd310"),
        ),
    ),
    # MD5 of the tarball as published on https://www.cs.toronto.edu/~kriz/cifar.html.
    "cifar10": _Remote(
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
        files=(_RemoteFile("cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a"),),
    ),
}


def _fetch(url: str) -> bytes:
    """Download ``url`` over HTTPS; the only place onespike touches the network.

    Args:
        url: an ``https://`` address.

    Returns:
        The response body.
    """
    if not url.startswith("https://"):
        raise ConfigError(f"refusing to download {url!r}: only https:// addresses are used")
    with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
        data: bytes = response.read(_MAX_DOWNLOAD_BYTES + 1)
    if len(data) > _MAX_DOWNLOAD_BYTES:
        raise CorruptFileError(f"{url} is larger than {_MAX_DOWNLOAD_BYTES} bytes; refusing it")
    return data


def _fetch_from_mirrors(name: str, remote: _Remote, file: _RemoteFile) -> tuple[str, bytes]:
    failures: list[str] = []
    for mirror in remote.mirrors:
        url = mirror + file.name
        try:
            return url, _fetch(url)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"  {url}: {exc}")
    raise DatasetNotFoundError(
        f"could not download {name!r} file {file.name}:\n"
        + "\n".join(failures)
        + "\n"
        + _provide_hint(name).replace("  - download=True", "  - retry download=True", 1)
    )


def _verify(data: bytes, content: bytes | None, url: str, file: _RemoteFile, target: Path) -> None:
    """Check the served bytes' MD5 and the decompressed content's SHA-256, where known."""
    checks: list[tuple[str, str | None, bytes | None, str]] = [
        ("MD5", file.md5, data, "of the file as served"),
        ("SHA-256", file.sha256, content, "of its decompressed content"),
    ]
    for algo, expected, payload, what in checks:
        if expected is None:
            continue
        if payload is None:
            raise ValueError(f"{algo} of {file.name} needs its content")  # pragma: no cover
        digest = hashlib.md5 if algo == "MD5" else hashlib.sha256
        actual = digest(payload).hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"{url}: {algo} {what} is {actual}, expected {expected}; the download is "
                f"corrupt or not the canonical file, and nothing was written to {target}"
            )
    if file.md5 is None and file.sha256 is None:
        # Checksum unknown: only the format check the caller does protects this file.
        warnings.warn(
            f"no checksum is known for {file.name}; only its format was checked",
            stacklevel=3,
        )


def download_dataset(name: str, *, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Download a dataset's canonical files over HTTPS into the cache, verified.

    Every file is fetched and checked (checksum and format) before anything is written, so a
    failed download leaves the cache as it was. Files already in the cache are kept.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"cifar10"``.
        cache_dir: base directory; default :func:`user_cache_dir`. Files go to
            ``cache_dir/<name>/`` (CIFAR-10: ``cache_dir/cifar10/cifar-10-batches-py/``).

    Returns:
        The directory now holding the dataset's files.

    Raises:
        ConfigError: unknown name, or ``digits`` (bundled, nothing to download).
        DatasetNotFoundError: no mirror could be reached.
        ChecksumError: a download does not match its published checksum.
        CorruptFileError: a download is not in the expected format.
    """
    _check_name(name)
    if name == "digits":
        raise ConfigError("the digits dataset ships with scikit-learn; nothing to download")
    base = _absolute(cache_dir) if cache_dir is not None else user_cache_dir()
    target = base / name
    if name == "cifar10":
        return _download_cifar(target)
    return _download_idx(name, target)


def _download_idx(name: str, target: Path) -> Path:
    remote = _REMOTE[name]
    pending: list[tuple[Path, bytes]] = []
    contents: dict[str, bytes] = {}
    for file in remote.files:
        raw_name = file.name.removesuffix(".gz")
        if (target / file.name).is_file() or (target / raw_name).is_file():
            continue
        url, data = _fetch_from_mirrors(name, remote, file)
        content = _gunzip(data, url)
        _verify(data, content, url, file, target)
        magic = _IDX_IMAGES_MAGIC if "images" in raw_name else _IDX_LABELS_MAGIC
        _parse_idx(content, url, magic)
        contents[raw_name] = content
        pending.append((target / file.name, data))
    for images_name, labels_name in _IDX_FILES.values():
        if images_name in contents and labels_name in contents:
            _check_idx_pair(
                _parse_idx(contents[images_name], images_name, _IDX_IMAGES_MAGIC),
                _parse_idx(contents[labels_name], labels_name, _IDX_LABELS_MAGIC),
                images_name,
                labels_name,
            )
    for path, data in pending:
        atomic_write_bytes(path, data)
    return target


def _download_cifar(target: Path) -> Path:
    folder = target / _CIFAR_FOLDER
    wanted = [f for split in SPLITS for f in _CIFAR_FILES[split]]
    if all((folder / f).is_file() for f in wanted):
        return folder
    remote = _REMOTE["cifar10"]
    file = remote.files[0]
    url, data = _fetch_from_mirrors("cifar10", remote, file)
    _verify(data, None, url, file, target)
    members = _extract_members(data, url, (*wanted, _CIFAR_META))
    missing = [f for f in wanted if f not in members]
    if missing:
        raise CorruptFileError(f"{url} lacks {', '.join(missing)} in {_CIFAR_FOLDER}/")
    for base_name in wanted:
        _parse_cifar_batch(members[base_name], f"{url}:{_CIFAR_FOLDER}/{base_name}")
    for base_name, content in members.items():
        atomic_write_bytes(folder / base_name, content)
    return folder


def _extract_members(archive: bytes, source: str, names: Sequence[str]) -> dict[str, bytes]:
    """Read the regular files ``cifar-10-batches-py/<name>`` out of a tar.gz, nothing else."""
    expected = {f"{_CIFAR_FOLDER}/{n}": n for n in names}
    out: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                key = member.name.removeprefix("./")
                if key not in expected or not member.isfile():
                    continue  # anything else (other names, links, "../" paths) is skipped
                stream = tar.extractfile(member)
                if stream is None:  # pragma: no cover - isfile() members always have one
                    continue
                out[expected[key]] = stream.read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CorruptFileError(f"{source} is not a readable tar.gz archive: {exc}") from exc
    return out


# --------------------------------------------------------------------------------------------
# Iterating
# --------------------------------------------------------------------------------------------


def _check_positive_int(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")


def batches(
    ds: Dataset, batch_size: int, *, shuffle: bool = False, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Iterate over a dataset in mini-batches; the last batch may be smaller.

    Args:
        ds: the dataset.
        batch_size: samples per batch, at least 1.
        shuffle: visit the samples in a random order drawn from ``seed``.
        seed: seed of the ``torch.Generator`` used when shuffling.

    Returns:
        An iterator of ``(images, labels)`` pairs.

    Raises:
        ConfigError: ``batch_size`` is not a positive integer.
    """
    _check_positive_int(batch_size, "batch_size")
    order: torch.Tensor | None = None
    if shuffle:
        generator = torch.Generator().manual_seed(int(seed))
        order = torch.randperm(len(ds), generator=generator, device="cpu")
    return _iterate(ds, batch_size, order)


def _iterate(
    ds: Dataset, batch_size: int, order: torch.Tensor | None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(ds), batch_size):
        if order is None:
            yield ds.images[start : start + batch_size], ds.labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            yield ds.images[index], ds.labels[index]


def split_validation(
    ds: Dataset, fraction: float = 0.1, *, seed: int = 0
) -> tuple[Dataset, Dataset]:
    """Split a dataset into a training part and a validation part, deterministically.

    ``round(fraction * len(ds))`` samples, drawn by a ``torch.Generator`` seeded with
    ``seed``, form the validation part; both parts keep the original sample order.

    Args:
        ds: the dataset to split.
        fraction: share of samples for validation, strictly between 0 and 1.
        seed: seed of the random draw.

    Returns:
        ``(rest, validation)``; ``rest`` keeps ``ds.split``, ``validation`` has split
        ``"validation"``.

    Raises:
        ConfigError: ``fraction`` is outside (0, 1) or leaves either part empty.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ConfigError(f"fraction must be a number in (0, 1), got {fraction!r}")
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"fraction must lie strictly between 0 and 1, got {fraction}")
    n = len(ds)
    n_val = round(fraction * n)
    if n_val < 1 or n_val >= n:
        raise ConfigError(
            f"fraction {fraction} of {n} samples gives {n_val} validation samples; "
            "both parts must be non-empty"
        )
    generator = torch.Generator().manual_seed(int(seed))
    order = torch.randperm(n, generator=generator, device="cpu")
    val_index = order[:n_val].sort().values
    rest_index = order[n_val:].sort().values
    return _subset(ds, rest_index, ds.split), _subset(ds, val_index, "validation")


def _subset(ds: Dataset, index: torch.Tensor, split: str) -> Dataset:
    return replace(ds, split=split, images=ds.images[index], labels=ds.labels[index])


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate every image by its own random offset, filling the uncovered border with zeros.

    Each image moves by ``(dy, dx)`` drawn uniformly from ``[-max_shift, max_shift]`` along
    its last two dimensions (height and width), the data augmentation of small image
    classifiers.

    Args:
        images: a batch ``(N, ..., H, W)`` with ``H`` and ``W`` above ``max_shift``.
        max_shift: the largest offset in pixels, ``>= 0`` (0 returns ``images`` unchanged).
        generator: the CPU generator the offsets are drawn from (a seeded one makes the
            augmentation reproducible).

    Returns:
        A new batch of the same shape, dtype and device.

    Raises:
        ConfigError: ``max_shift`` is negative or not smaller than the images, or the batch
            has no height and width dimensions.
    """
    if isinstance(max_shift, bool) or not isinstance(max_shift, int) or max_shift < 0:
        raise ConfigError(f"max_shift must be an integer >= 0, got {max_shift!r}")
    if max_shift == 0:
        return images
    if images.ndim < 3:
        raise ConfigError(
            f"random shifts need images (N, ..., H, W), got a batch of shape "
            f"{tuple(images.shape)}; use a dataset whose samples are images, or no shift"
        )
    height, width = images.shape[-2:]
    if max_shift >= min(height, width):
        raise ConfigError(
            f"a shift of up to {max_shift} pixels moves a {height}x{width} image out of view; "
            f"use a shift below {min(height, width)}"
        )
    s = max_shift
    offsets = torch.randint(-s, s + 1, (images.shape[0], 2), generator=generator, device="cpu")
    padded = torch.nn.functional.pad(images, (s, s, s, s))
    out = torch.empty_like(images)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        out[i] = padded[i, ..., s - dy : s - dy + height, s - dx : s - dx + width]
    return out


def random_flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror every image left to right with probability one half, each by its own draw.

    The horizontal flip of image classifiers whose classes are symmetric (clothing in
    Fashion-MNIST, objects in CIFAR); not for digits or text, where a mirrored sample is
    another class or none.

    Args:
        images: a batch ``(N, ..., H, W)``.
        generator: the CPU generator the draws come from (a seeded one makes it reproducible).

    Returns:
        A new batch of the same shape, dtype and device.

    Raises:
        ConfigError: the batch has no height and width dimensions.
    """
    if images.ndim < 3:
        raise ConfigError(
            f"random flips need images (N, ..., H, W), got a batch of shape "
            f"{tuple(images.shape)}; use a dataset whose samples are images, or no flip"
        )
    flip = torch.rand(images.shape[0], generator=generator, device="cpu") < 0.5
    mask = flip.to(images.device).view(-1, *([1] * (images.ndim - 1)))
    return torch.where(mask, images.flip(-1), images)
