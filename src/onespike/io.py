"""Safe model files: safetensors weights plus a JSON description, never pickle.

A saved model is a directory holding two files:

* ``model.safetensors``: the state dict (plain tensors; reading it cannot run code);
* ``model.json``: the format version, the :class:`~onespike.models.ModelSpec` that rebuilds the
  architecture, the dataset, the input normalisation, the accuracy, free-form extras and the
  SHA-256 of ``model.safetensors``.

Both are written atomically, the JSON last, so a ``model.json`` always describes weights that
were completely written. Loading checks the files before parsing them: pickles and
``torch.save`` archives are refused (unpickling can run arbitrary code), truncated or malformed
safetensors and checksum mismatches raise :class:`~onespike.errors.CorruptFileError`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import nn

from onespike._fs import atomic_write_bytes, atomic_write_json, read_json
from onespike.errors import (
    ChecksumError,
    ConfigError,
    CorruptFileError,
    MissingFileError,
    ModelSourceError,
    OnespikeError,
    UnsafeFileError,
)
from onespike.models import ModelSpec
from onespike.sources import ModelSource, state_mismatches
from onespike.validate import (
    DEFAULT_LIMITS,
    Fields,
    Limits,
    check_description_sha256,
    description_sha256,
    plain_file_name,
)

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "WEIGHTS_FILE",
    "load_model",
    "load_state_dict_file",
    "read_model_dir",
    "read_safetensors",
    "save_model",
]

FORMAT_VERSION = 2
"""Version of the ``model.json`` layout written by :func:`save_model`. Version 2 adds
``description_sha256`` (the checksum of the description itself); version 1 files are still
read, with every field validated but no description checksum to check."""
_READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "model.safetensors"
"""Name of the weights file inside a saved model directory."""
METADATA_FILE = "model.json"
"""Name of the description file inside a saved model directory."""

_FORMAT_NAME = "onespike-model"
_REQUIRED_KEYS = ("format_version", "spec", "dataset", "sha256")
_MAX_HEADER_BYTES = 100 * 1024 * 1024
_CONVERT_HINT = (
    "To convert a model you trust, load it yourself and write safetensors instead: "
    'safetensors.torch.save_file(model.state_dict(), "model.safetensors"), then add a '
    "model.json (easiest: onespike.io.save_model(directory, model, spec, dataset=...), which "
    "writes both files)"
)
_CREATE_HINT = (
    "create one with `onespike train` or onespike.io.save_model(directory, model, spec, "
    "dataset=...)"
)


def save_model(
    directory: str | os.PathLike[str],
    model: nn.Module,
    spec: ModelSpec | ModelSource,
    *,
    dataset: str,
    accuracy: float | None = None,
    normalization: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory``, atomically, JSON last.

    Args:
        directory: destination directory; created if missing, existing files are replaced.
        model: the trained model; its state dict must match ``spec``'s architecture.
        spec: how the model was built: a :class:`~onespike.models.ModelSpec` (from
            :func:`onespike.models.build_model`), or the :class:`~onespike.sources.ModelSource`
            of a user's ``file.py:NAME`` (recorded, never imported on load: such a directory
            is read back with ``load_module("file.py:NAME", weights=directory)``).
        dataset: name of the dataset the model was trained on.
        accuracy: test accuracy in ``[0, 1]``, if known.
        normalization: the input normalisation the model expects (e.g. ``{"mean": [...],
            "std": [...]}``); must be JSON-serialisable.
        extra: any other JSON-serialisable information to keep with the model.

    Returns:
        The directory.

    Raises:
        ConfigError: the state dict does not match ``spec``, ``accuracy`` is outside
            ``[0, 1]``, ``dataset`` is empty, or a dict is not JSON-serialisable.
    """
    if not isinstance(dataset, str) or not dataset:
        raise ConfigError(f"dataset must be a non-empty string, got {dataset!r}")
    if accuracy is not None and not (math.isfinite(float(accuracy)) and 0 <= accuracy <= 1):
        raise ConfigError(f"accuracy must be in [0, 1] or None, got {accuracy!r}")
    state = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    if isinstance(spec, ModelSpec):
        with torch.random.fork_rng(devices=[]):  # building the reference must not move the RNG
            reference = spec.build()
        mismatches = _state_mismatches(reference, state)
        if mismatches:
            raise ConfigError(
                f"the model's state dict does not match spec {spec.name!r} "
                f"{spec.input_shape}: {'; '.join(mismatches)}"
            )
    meta: dict[str, Any] = {
        "format": _FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "spec": spec.to_json(),
        "dataset": dataset,
        "normalization": normalization,
        "accuracy": None if accuracy is None else float(accuracy),
        "extra": extra if extra is not None else {},
        "weights_file": WEIGHTS_FILE,
    }
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model metadata must be JSON-serialisable: {exc}") from exc
    data = safetensors.torch.save(state, metadata={"format": "pt"})
    meta["sha256"] = hashlib.sha256(data).hexdigest()
    meta["description_sha256"] = description_sha256(meta)
    out = Path(directory)
    atomic_write_bytes(out / WEIGHTS_FILE, data)
    atomic_write_json(out / METADATA_FILE, meta)
    return out


def load_model(
    path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_model`, without ever unpickling anything.

    Every field of ``model.json`` is validated first (:mod:`onespike.validate`), and the
    architecture is laid out without memory (on torch's ``meta`` device) and compared with the
    weights before it is built: a description that declares more than the weights hold fails
    with a named error, not an allocation.

    Args:
        path: the model directory, or its ``.safetensors`` file (the description is then the
            ``.json`` file of the same name beside it), or that ``.json`` file.
        limits: upper bounds on the sizes the description may declare.

    Returns:
        ``(model, meta)``: the model in eval mode with the saved weights, and the parsed
        ``model.json``.

    Raises:
        MissingFileError: the weights or the description file does not exist.
        UnsafeFileError: the file is a pickle or a ``torch.save`` archive.
        CorruptFileError: the weights are truncated or malformed, fail the SHA-256 recorded in
            the description, the description is malformed or names an unknown architecture,
            or the weights do not match the architecture.
    """
    state, meta = read_model_dir(path, limits=limits)
    meta_path = _files(Path(path))[1]
    if isinstance(meta["spec"], dict) and "source" in meta["spec"]:
        record = meta["spec"]
        raise ModelSourceError(
            f"{meta_path} describes a model built from your code ({record.get('file')}:"
            f"{record.get('name')}); onespike never imports code a file names. Load it with "
            f"--model-file {record.get('file')}:{record.get('name')} --weights {path} (Python: "
            "onespike.load_module(...))"
        )
    try:
        spec = ModelSpec.from_json(meta["spec"])
        _check_spec_sizes(spec, meta_path, limits)
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            layout = spec.build()  # shapes only: nothing allocated
    except OnespikeError as exc:
        raise CorruptFileError(f"{meta_path}: bad model spec: {exc}") from exc
    parameters = sum(p.numel() for p in layout.parameters())
    if parameters > limits.max_parameters:
        raise CorruptFileError(
            f"{meta_path} describes {parameters} parameters, more than the bound "
            f"{limits.max_parameters}; pass limits=onespike.validate.Limits(max_parameters=...) "
            "for a model that large"
        )
    mismatches = _state_mismatches(layout, state)
    if mismatches:
        raise CorruptFileError(
            f"{_files(Path(path))[0]} does not match architecture {spec.name!r} "
            f"{spec.input_shape} described in {meta_path.name}: {'; '.join(mismatches)}"
        )
    with torch.random.fork_rng(devices=[]):  # loading must not move the global RNG
        model = spec.build()
    model.load_state_dict(state)
    model.eval()
    return model, meta


def _files(given: Path) -> tuple[Path, Path]:
    """The weights and description files of a model directory, ``.safetensors`` or ``.json``."""
    if given.is_dir():
        return given / WEIGHTS_FILE, given / METADATA_FILE
    if given.suffix == ".json":
        return given.with_suffix(".safetensors"), given
    return given, given.with_suffix(".json")


def read_model_dir(
    path: str | os.PathLike[str], *, limits: Limits = DEFAULT_LIMITS
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a saved model's weights and description, checked, without building anything.

    Args:
        path: the model directory, its ``.safetensors`` file or its ``.json`` file.
        limits: upper bounds on the sizes the description may declare.

    Returns:
        ``(state, meta)``: the state dict and the parsed ``model.json``.

    Raises:
        MissingFileError, UnsafeFileError, CorruptFileError: as :func:`load_model`.
    """
    given = Path(path)
    weights, meta_path = _files(given)
    if weights.is_file():
        _refuse_pickle(weights)  # before anything else reads the file
    elif given.is_dir():
        raise MissingFileError(
            f"no {WEIGHTS_FILE} in model directory {given}{_pickle_note(given)}; {_CREATE_HINT}"
        )
    else:
        raise MissingFileError(f"model file {weights} does not exist; {_CREATE_HINT}")
    if not meta_path.is_file():
        raise MissingFileError(
            f"{meta_path} does not exist: onespike needs it beside {weights.name} to rebuild "
            f"the architecture; {_CREATE_HINT}"
        )
    meta = _read_meta(meta_path, limits)
    state, _ = read_safetensors(weights, expected_sha256=meta["sha256"])
    return state, meta


def load_state_dict_file(
    path: str | os.PathLike[str], *, sha256: str | None = None
) -> dict[str, torch.Tensor]:
    """Read a bare safetensors file into a state dict, refusing pickles and corrupt files.

    Args:
        path: the ``.safetensors`` file.
        sha256: if given, the expected SHA-256 (hex) of the file.

    Returns:
        Tensor name -> tensor (on the CPU).

    Raises:
        MissingFileError: the file does not exist.
        UnsafeFileError: the file is a pickle or a ``torch.save`` archive.
        CorruptFileError: the file is truncated, malformed or fails ``sha256``.
    """
    file = Path(path)
    if not file.is_file():
        raise MissingFileError(
            f"safetensors file {file} does not exist; write one with "
            'safetensors.torch.save_file(model.state_dict(), "model.safetensors")'
        )
    state, _ = read_safetensors(file, expected_sha256=sha256)
    return state


def _refuse_pickle(path: Path) -> None:
    """Raise :class:`UnsafeFileError` if ``path`` starts like a pickle or a torch.save zip."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    _refuse_pickle_bytes(head, path)


def _refuse_pickle_bytes(head: bytes, path: Path) -> None:
    kind = None
    if head[:1] == b"\x80":
        kind = "a Python pickle (protocol >= 2, as written by legacy torch.save)"
    elif head == b"PK\x03\x04":
        kind = "a zip archive as written by torch.save"
    if kind is not None:
        raise UnsafeFileError(
            f"{path} is {kind}. onespike never unpickles: loading a pickle can run arbitrary "
            f"code. {_CONVERT_HINT}"
        )


def _pickle_note(directory: Path) -> str:
    found = sorted(
        p.name
        for p in directory.iterdir()
        if p.suffix in {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"}
    )
    if not found:
        return ""
    return f" (found {', '.join(found)}: pickle-based files are never loaded. {_CONVERT_HINT})"


def read_safetensors(
    path: Path, *, expected_sha256: str | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Validate and read a safetensors file (pickles refused, truncation and malformed
    headers named); return its tensors and its ``__metadata__``.

    The whole file is read once, so the checksum and the parse see the same bytes.
    """
    data = path.read_bytes()
    _refuse_pickle_bytes(data[:4], path)
    if len(data) < 8:
        raise CorruptFileError(
            f"{path} is truncated: {len(data)} bytes, shorter than a safetensors header"
        )
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len > min(len(data) - 8, _MAX_HEADER_BYTES):
        raise CorruptFileError(
            f"{path} is truncated or not a safetensors file: its header claims {header_len} "
            f"bytes but the file has {len(data) - 8} after the length field"
        )
    try:
        header = json.loads(data[8 : 8 + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{path} has a malformed safetensors header: {exc}") from exc
    if not isinstance(header, dict):
        raise CorruptFileError(f"{path} has a malformed safetensors header: not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise CorruptFileError(f"{path} has a malformed safetensors header: bad __metadata__")
    body = len(data) - 8 - header_len
    end = 0
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise CorruptFileError(f"{path}: tensor {name!r} has a malformed header entry")
        end = max(end, offsets[1])
    if end > body:
        raise CorruptFileError(
            f"{path} is truncated: its tensors need {end} data bytes but only {body} are present"
        )
    if expected_sha256 is not None:
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected_sha256.lower():
            raise ChecksumError(
                f"{path} fails its SHA-256 check (expected {expected_sha256}, got {actual}): the "
                "file was modified or damaged after it was saved; save the model again"
            )
    try:
        tensors = safetensors.torch.load(data)
    except Exception as exc:  # safetensors raises its own error type for any malformed input
        raise CorruptFileError(f"{path} is not a valid safetensors file: {exc}") from exc
    return tensors, {str(k): str(v) for k, v in metadata.items()}


def _read_meta(path: Path, limits: Limits = DEFAULT_LIMITS) -> dict[str, Any]:
    """Parse and validate ``model.json``: every field's type, finiteness and range."""
    fix = "save the model again (onespike.io.save_model or `onespike train`)"
    meta = read_json(path, fix)
    if not isinstance(meta, dict):
        raise CorruptFileError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise CorruptFileError(
            f"{path} is missing {', '.join(missing)}; it was not written by "
            "onespike.io.save_model (save the model again)"
        )
    version = meta["format_version"]
    if version not in _READABLE_VERSIONS:
        raise CorruptFileError(
            f"{path} has format_version {version!r}; this onespike reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))} (a newer onespike may have written it)"
        )
    fields = Fields(meta, path, "model.json", fix)
    if "format" in meta:
        fields.string("format", choices=(_FORMAT_NAME,))
    fields.sha256("sha256")
    if version >= 2:
        check_description_sha256(meta, path, fix)
    dataset = fields.string("dataset")
    if not dataset:
        raise fields.fail("dataset", "is empty")
    if meta.get("accuracy") is not None:
        fields.number("accuracy", low=0.0, high=1.0)
    if meta.get("weights_file") is not None:
        plain_file_name(meta["weights_file"], f"{path}: model.json.weights_file", fix)
    if meta.get("normalization") is not None:
        _check_normalization(fields.child("normalization"))
    if not isinstance(meta.get("extra", {}), dict):
        raise fields.fail("extra", "must be a JSON object")
    spec = fields.child("spec")
    if "source" not in spec.record:
        _check_spec_fields(spec, limits)
    return meta


def _check_normalization(fields: Fields) -> None:
    for key in ("mean", "std"):
        if not fields.has(key):
            continue
        values = fields.items(key, most=4096)
        for index, value in enumerate(values):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise fields.fail(f"{key}[{index}]", f"must be a number, got {value!r}")
            if not math.isfinite(value) or (key == "std" and not value > 0):
                raise fields.fail(
                    f"{key}[{index}]", f"must be finite{' and positive' if key == 'std' else ''}"
                )


def _check_spec_fields(spec: Fields, limits: Limits) -> None:
    """Types and bounds of a registry model's spec, before :meth:`ModelSpec.from_json`."""
    spec.string("name")
    shape = spec.shape("input_shape", limits.max_values)
    if len(shape) != 3:
        raise spec.fail("input_shape", f"must be three integers (C, H, W), got {list(shape)}")
    spec.integer("num_classes", low=1, high=limits.max_width)
    kwargs = spec.get("kwargs", {})
    if not isinstance(kwargs, dict):
        raise spec.fail("kwargs", "must be a JSON object")
    for key, value in kwargs.items():
        _check_argument(spec, f"kwargs.{key}", value, limits)


def _check_argument(spec: Fields, key: str, value: object, limits: Limits) -> None:
    """A constructor argument: a bool, a string, a finite number (integers at most
    ``max_width``, so widths are bounded), or a short list of those."""
    if isinstance(value, list):
        if len(value) > 1024:
            raise spec.fail(key, f"has {len(value)} entries, more than the bound 1024")
        for index, item in enumerate(value):
            _check_argument(spec, f"{key}[{index}]", item, limits)
        return
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        spec.check_integer(key, value, low=-limits.max_width, high=limits.max_width)
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise spec.fail(key, f"must be finite, got {value!r}")
        return
    raise spec.fail(key, f"must be a number, string, boolean or list, got {value!r}")


def _check_spec_sizes(spec: ModelSpec, path: Path, limits: Limits) -> None:
    values = math.prod(spec.input_shape)
    if values > limits.max_values:
        raise CorruptFileError(
            f"{path}: input_shape {spec.input_shape} holds {values} values, more than the bound "
            f"{limits.max_values}"
        )


def _state_mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Describe up to five differences between ``model``'s state dict and ``state``."""
    problems = state_mismatches(model, state)
    if len(problems) > 5:
        problems = [*problems[:5], f"and {len(problems) - 5} more"]
    return problems
