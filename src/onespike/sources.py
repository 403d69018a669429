"""The door for a user's own network: ``file.py:NAME`` plus weights, an ONNX file, or a model
directory onespike saved.

:func:`load_module` is the one function the API and the command line share. It returns an
``nn.Module`` in eval mode whatever the source:

- ``"path/to/file.py:NAME"``: the file is imported (it is the user's own code, named
  explicitly; nothing else ever runs code), ``NAME`` is an ``nn.Module`` subclass or a function
  returning a module, called with ``args`` as keyword arguments. ``weights`` then loads a
  state dict from a ``.safetensors`` file, from a ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` state
  dict read with ``torch.load(weights_only=True)`` (never full unpickling: a pickled whole
  model is refused with the way to save a state dict), or from a model directory onespike
  wrote for this architecture (``onespike train --model-file file.py:NAME``), whose
  ``model.json`` extras (TTFS-aware scales, a fine-tuned hybrid network) then apply;
- ``"model.onnx"``: the ONNX graph imported by :func:`onespike.onnx_io.from_onnx`, wrapped as a
  :class:`~onespike.graph.GraphNet` (:func:`onespike.extract` returns its graph unchanged);
- a directory or ``.safetensors`` file written by :func:`onespike.io.save_model` for one of
  onespike's own architectures.

Missing, unexpected and mis-shaped state-dict entries are one :class:`ModelSourceError`
listing every one.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import pickle
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from onespike.errors import (
    ConfigError,
    CorruptFileError,
    MissingFileError,
    ModelSourceError,
    UnsafeFileError,
)

__all__ = [
    "ModelSource",
    "SourceKind",
    "load_module",
    "load_weights",
    "model_source",
    "state_mismatches",
]

_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".tar"}
_STATE_KEYS = ("state_dict", "model_state_dict", "model")
_SAVE_HINT = (
    "save the weights alone: torch.save(model.state_dict(), 'weights.pt') or "
    "safetensors.torch.save_file(model.state_dict(), 'weights.safetensors')"
)
SourceKind = str
"""``"python"`` (file.py:NAME), ``"onnx"`` or ``"onespike"`` (a saved model directory)."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from, as the user named it.

    Attributes:
        kind: ``"python"``, ``"onnx"`` or ``"onespike"``.
        path: the Python, ONNX or model file/directory.
        name: for ``"python"``, the class or function in the file.
        args: for ``"python"``, keyword arguments of ``name``.
    """

    kind: SourceKind
    path: Path
    name: str | None = None
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """A short name for tables and records: ``NAME`` or the file's stem."""
        return self.name if self.name else self.path.stem

    def build(self) -> nn.Module:
        """Import the file and build a freshly initialised model (``"python"`` sources)."""
        if self.kind != "python":
            raise ModelSourceError(f"{self.path} is not a file.py:NAME source to build")
        return _build(self)

    def to_json(self) -> dict[str, Any]:
        """The record ``model.json`` keeps of a user's architecture (never imported on load)."""
        return {
            "source": self.kind,
            "file": str(self.path),
            "name": self.name,
            "args": json.loads(json.dumps(self.args)),
        }


def model_source(
    spec: str | os.PathLike[str], args: Mapping[str, Any] | None = None
) -> ModelSource:
    """Parse what the user named: ``file.py:NAME``, ``model.onnx``, or a model directory/file.

    Args:
        spec: the source as written on the command line.
        args: keyword arguments for a ``file.py:NAME`` source.

    Returns:
        The parsed source (files are checked to exist, nothing is imported yet).

    Raises:
        MissingFileError: the file or directory does not exist.
        ModelSourceError: ``args`` given for a source that takes none, or a malformed spec.
    """
    text = os.fspath(spec)
    kwargs = dict(args or {})
    path_part, sep, name = text.rpartition(":")
    if sep and path_part.endswith(".py"):
        path = Path(path_part)
        if not name.isidentifier():
            raise ModelSourceError(
                f"{text!r}: {name!r} is not a Python name; write path/to/file.py:ClassName"
            )
        if not path.is_file():
            raise MissingFileError(f"model file {path} does not exist (from {text!r})")
        return ModelSource("python", path, name, kwargs)
    path = Path(text)
    if path.suffix == ".py":
        raise ModelSourceError(
            f"{text!r} names a Python file but not what to build from it; write "
            f"{text}:ClassName (an nn.Module subclass or a function returning one)"
        )
    if args is not None:
        raise ModelSourceError(
            f"model arguments ({sorted(kwargs)}) apply to a file.py:NAME source only; {text!r} "
            "already fixes its architecture"
        )
    if not path.exists():
        raise MissingFileError(f"model file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        return ModelSource("onnx", path)
    return ModelSource("onespike", path)


def _import_file(path: Path) -> Any:
    """Import the user's file as a fresh module; its directory is importable meanwhile."""
    module_name = f"onespike_user_{path.stem}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ModelSourceError(f"{path} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: any error it raises is reported as such
        del sys.modules[module_name]
        raise ModelSourceError(
            f"importing {path} failed: {type(exc).__name__}: {exc}. Fix the file so that "
            f"`python -c \"import runpy; runpy.run_path('{path}')\"` runs"
        ) from exc
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def _build(source: ModelSource) -> nn.Module:
    module = _import_file(source.path)
    if not hasattr(module, str(source.name)):
        found = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and (inspect.isfunction(v) or (inspect.isclass(v) and issubclass(v, nn.Module)))
            and getattr(v, "__module__", None) == module.__name__
        )
        raise ModelSourceError(
            f"{source.path} has no {source.name!r}; it defines "
            f"{', '.join(found) if found else 'no model classes or functions'}"
        )
    factory = getattr(module, str(source.name))
    if not callable(factory):
        raise ModelSourceError(
            f"{source.path}:{source.name} is a {type(factory).__name__}, not an nn.Module class "
            "or a function returning one"
        )
    try:
        built = factory(**source.args)
    except TypeError as exc:
        try:
            takes = f"it takes {inspect.signature(factory)}"
        except (TypeError, ValueError):  # builtins without a signature
            takes = "see its definition"
        raise ModelSourceError(
            f"{source.path}:{source.name}({_call(source.args)}) failed: {exc}; {takes}. Give "
            "its arguments with --model-args '{\"name\": value}' (JSON)"
        ) from exc
    except Exception as exc:  # the user's constructor
        raise ModelSourceError(
            f"{source.path}:{source.name}({_call(source.args)}) raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(built, nn.Module):
        raise ModelSourceError(
            f"{source.path}:{source.name}({_call(source.args)}) returned a "
            f"{type(built).__name__}, not a torch.nn.Module"
        )
    return built


def _call(args: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in args.items())


def _plain_state(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """A state dict from what ``torch.load`` returned, or a named refusal."""
    if isinstance(obj, nn.Module):
        raise UnsafeFileError(f"{path} holds a whole pickled model, not a state dict; {_SAVE_HINT}")
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {str(k): v for k, v in obj.items()}
        nested = [k for k in _STATE_KEYS if isinstance(obj.get(k), Mapping)]
        if len(nested) == 1:
            return _plain_state(obj[nested[0]], path)
        kinds = sorted({type(v).__name__ for v in obj.values()})
        raise ModelSourceError(
            f"{path} is a dict but not a state dict (values of types {', '.join(kinds) or 'none'}"
            f"; keys {sorted(map(str, obj))[:8]}); a checkpoint must hold the tensors directly "
            f"or under one of {', '.join(_STATE_KEYS)}; {_SAVE_HINT}"
        )
    raise ModelSourceError(f"{path} holds a {type(obj).__name__}, not a state dict; {_SAVE_HINT}")


def load_weights(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a state dict without ever unpickling code.

    Args:
        path: a ``.safetensors`` file, a ``.pt``/``.pth``/``.bin``/``.ckpt`` state dict, or a
            model directory written by :func:`onespike.io.save_model`.

    Returns:
        ``(state, meta)``: the tensors on the CPU, and the directory's ``model.json`` (empty
        for a bare weights file).

    Raises:
        MissingFileError: the file does not exist.
        UnsafeFileError: the file is a pickled whole model, or a pickle that needs code.
        CorruptFileError: the file is truncated or malformed.
        ModelSourceError: the file holds something other than a state dict.
    """
    from onespike.io import read_model_dir, read_safetensors

    file = Path(path)
    if file.is_dir():
        return read_model_dir(file)
    if not file.is_file():
        raise MissingFileError(f"weights file {file} does not exist")
    if file.suffix == ".safetensors":
        state, _ = read_safetensors(file)
        return state, {}
    if file.suffix.lower() not in _PICKLE_SUFFIXES:
        raise ModelSourceError(
            f"weights file {file}: unknown format {file.suffix!r}; use .safetensors, or a "
            f"state dict saved with torch.save as .pt/.pth ({_SAVE_HINT})"
        )
    try:
        obj = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            f"{file} needs code to unpickle (a whole model or custom objects: {exc}), and "
            f"onespike loads weights only (torch.load(weights_only=True)); {_SAVE_HINT}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise CorruptFileError(f"{file} is not a readable torch.save file: {exc}") from exc
    return _plain_state(obj, file), {}


def state_mismatches(model: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    """Every difference between ``model``'s state dict and ``state`` (missing, unexpected,
    mis-shaped keys), one line each."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k} has shape {tuple(state[k].shape)} in the file but {shape} in the model"
        for k, shape in expected.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    return problems


def _fit_state(model: nn.Module, state: dict[str, torch.Tensor], origin: str) -> None:
    """Load ``state`` strictly; a ``module.`` prefix (DataParallel) is removed if needed."""
    expected = set(model.state_dict())
    if state and not (set(state) & expected) and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    problems = state_mismatches(model, state)
    if problems:
        shown = problems[:40] + ([f"and {len(problems) - 40} more"] if len(problems) > 40 else [])
        raise ModelSourceError(
            f"the weights in {origin} do not fit {type(model).__name__} "
            f"({len(problems)} problem(s)):\n" + "\n".join(f"  - {p}" for p in shown)
        )
    model.load_state_dict(state)


def load_module(
    source: str | os.PathLike[str] | ModelSource,
    *,
    weights: str | os.PathLike[str] | None = None,
    args: Mapping[str, Any] | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Build a user's model from any source onespike reads, in eval mode.

    Args:
        source: ``"file.py:NAME"``, ``"model.onnx"``, an onespike model directory or
            ``.safetensors`` file, or a parsed :class:`ModelSource`.
        weights: for ``file.py:NAME``: the state dict (``.safetensors``, ``.pt``/``.pth``, or a
            model directory onespike saved); without it the model keeps its initial weights.
        args: keyword arguments of ``NAME``.
        input_shape: per-sample input shape, for an ONNX file whose input dimensions are
            symbolic (checked against the file's where it fixes them).

    Returns:
        ``(module, meta)``: the model, and the description of a model directory (its
        ``model.json``: dataset, accuracy, extras) or ``{}``.

    Raises:
        MissingFileError, ModelSourceError, UnsafeFileError, CorruptFileError: see the
            module docstring; every message names the file and the fix.
    """
    parsed = source if isinstance(source, ModelSource) else model_source(source, args)
    if parsed.kind != "python" and weights is not None:
        raise ModelSourceError(
            f"--weights applies to a file.py:NAME source; {parsed.path} carries its own weights"
        )
    if parsed.kind == "onnx":
        from onespike.graph import GraphNet
        from onespike.onnx_io import from_onnx

        return GraphNet(from_onnx(parsed.path, input_shape=input_shape)).eval(), {}
    if parsed.kind == "onespike":
        from onespike.io import load_model

        return load_model(parsed.path)
    model = _build(parsed)
    meta: dict[str, Any] = {}
    if weights is not None:
        state, meta = load_weights(weights)
        _fit_state(model, state, str(weights))
    return model.eval(), meta


def check_json_args(text: str) -> dict[str, Any]:
    """Parse ``--model-args``: a JSON object of keyword arguments."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"--model-args must be a JSON object, e.g. '{{\"num_classes\": 10}}': {exc}"
        ) from exc
    if not isinstance(value, dict):
        raise ConfigError(f"--model-args must be a JSON object, got {type(value).__name__}")
    return value
