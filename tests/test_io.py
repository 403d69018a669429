"""Model files: safetensors round trips, and refusal of pickles and damaged files."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from onespike.errors import (
    ChecksumError,
    ConfigError,
    CorruptFileError,
    MissingFileError,
    UnsafeFileError,
)
from onespike.io import (
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    load_model,
    load_state_dict_file,
    save_model,
)
from onespike.models import ModelSpec, build_model
from onespike.validate import description_sha256


def _saved_mlp(directory: Path) -> tuple[nn.Module, ModelSpec]:
    torch.manual_seed(0)
    model, spec = build_model("mlp", (1, 8, 8), 10, hidden=(16,))
    save_model(directory, model, spec, dataset="digits", accuracy=0.5)
    return model, spec


class _Payload:
    """Unpickling this would create ``path``: proof that a loader ran code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.path), "w"))


@pytest.mark.parametrize(
    ("name", "shape"),
    [("mlp", (1, 8, 8)), ("quartz-convnet", (1, 28, 28)), ("vgg-small", (3, 32, 32))],
)
def test_round_trip_gives_identical_outputs(
    tmp_path: Path, name: str, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    model, spec = build_model(name, shape, 10)
    model.train()
    model(torch.rand(8, *shape))  # moves BatchNorm running statistics away from their defaults
    model.eval()
    x = torch.rand(4, *shape)
    norm = {"mean": [0.5] * shape[0], "std": [0.25] * shape[0]}
    out = save_model(
        tmp_path / "m",
        model,
        spec,
        dataset="toy",
        accuracy=0.75,
        normalization=norm,
        extra={"k": 1},
    )
    assert out == tmp_path / "m"
    assert sorted(p.name for p in out.iterdir()) == [METADATA_FILE, WEIGHTS_FILE]  # no .tmp left
    rng = torch.get_rng_state()
    loaded, meta = load_model(out)
    assert torch.equal(torch.get_rng_state(), rng)  # loading does not move the global RNG
    assert not loaded.training
    assert type(loaded) is type(model)
    assert torch.equal(loaded(x), model(x))
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert meta["format_version"] == FORMAT_VERSION
    assert meta["spec"] == spec.to_json()
    assert meta["dataset"] == "toy"
    assert meta["accuracy"] == 0.75
    assert meta["normalization"] == norm
    assert meta["extra"] == {"k": 1}
    loaded_file, _ = load_model(out / WEIGHTS_FILE)
    assert torch.equal(loaded_file(x), model(x))
    assert torch.equal(load_model(out / METADATA_FILE)[0](x), model(x))


def test_model_json_records_checksum(tmp_path: Path) -> None:
    import hashlib

    _saved_mlp(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    assert meta["sha256"] == hashlib.sha256((tmp_path / WEIGHTS_FILE).read_bytes()).hexdigest()
    state = load_state_dict_file(tmp_path / WEIGHTS_FILE, sha256=meta["sha256"])
    assert sorted(state) == ["layers.1.bias", "layers.1.weight", "layers.3.bias", "layers.3.weight"]
    assert state["layers.1.weight"].shape == (16, 64)


def test_save_model_validates(tmp_path: Path) -> None:
    model, spec = build_model("mlp", (1, 8, 8), 10)
    other, _ = build_model("mlp", (1, 8, 8), 10, hidden=(4,))
    with pytest.raises(ConfigError, match=r"does not match spec 'mlp'.*missing layers\.5\.weight"):
        save_model(tmp_path, other, spec, dataset="digits")
    with pytest.raises(ConfigError, match="accuracy"):
        save_model(tmp_path, model, spec, dataset="digits", accuracy=1.5)
    with pytest.raises(ConfigError, match="dataset"):
        save_model(tmp_path, model, spec, dataset="")
    with pytest.raises(ConfigError, match="JSON"):
        save_model(tmp_path, model, spec, dataset="digits", extra={"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_torch_save_file_is_refused(tmp_path: Path) -> None:
    model, _ = build_model("mlp", (1, 8, 8), 10, hidden=(4,))
    path = tmp_path / "model.pt"
    torch.save(model.state_dict(), path)
    with pytest.raises(UnsafeFileError, match=r"never unpickles.*arbitrary code.*save_file"):
        load_model(path)
    with pytest.raises(UnsafeFileError, match=r"torch\.save"):
        load_state_dict_file(path)
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / WEIGHTS_FILE).write_bytes(path.read_bytes())  # a pickle in disguise
    with pytest.raises(UnsafeFileError):
        load_model(directory)


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_pickle_is_refused_without_running_it(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
    with pytest.raises(UnsafeFileError, match="pickle"):
        load_model(path)
    with pytest.raises(UnsafeFileError):
        load_state_dict_file(path)
    assert not marker.exists()
    # The payload is real: unpickling it would have created the marker.
    pickle.loads(path.read_bytes()).close()
    assert marker.exists()


def test_protocol_zero_pickle_is_corrupt_and_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(_Payload(marker), protocol=0))
    with pytest.raises(CorruptFileError, match="not a safetensors file"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_directory_with_only_a_pickle_explains(tmp_path: Path) -> None:
    (tmp_path / "model.pth").write_bytes(b"\x80\x04.")
    with pytest.raises(MissingFileError, match=r"no model.safetensors.*found model.pth"):
        load_model(tmp_path)


def test_truncated_file_is_corrupt(tmp_path: Path) -> None:
    _saved_mlp(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) - 100])
    with pytest.raises(CorruptFileError, match=rf"{WEIGHTS_FILE} is truncated"):
        load_model(tmp_path)
    weights.write_bytes(data[:5])
    with pytest.raises(CorruptFileError, match="shorter than a safetensors header"):
        load_state_dict_file(weights)
    weights.write_bytes(data[:40])  # cut inside the header
    with pytest.raises(CorruptFileError, match="header claims"):
        load_state_dict_file(weights)


def test_bad_header_json_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    header = b"{not json}"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(CorruptFileError, match=r"w.safetensors has a malformed safetensors header"):
        load_state_dict_file(path)


def test_tampered_bytes_fail_the_checksum(tmp_path: Path) -> None:
    _saved_mlp(tmp_path)
    weights = tmp_path / WEIGHTS_FILE
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # still a well-formed safetensors file, with one weight changed
    weights.write_bytes(bytes(data))
    assert load_state_dict_file(weights)["layers.3.bias"].shape == (10,)
    with pytest.raises(ChecksumError, match=rf"{WEIGHTS_FILE} fails its SHA-256 check"):
        load_model(tmp_path)


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"does not exist.*onespike train.*save_model"):
        load_model(tmp_path / "nowhere")
    with pytest.raises(MissingFileError, match=r"no model.safetensors in model directory"):
        load_model(tmp_path)
    with pytest.raises(MissingFileError, match="save_file"):
        load_state_dict_file(tmp_path / "x.safetensors")
    _saved_mlp(tmp_path)
    (tmp_path / METADATA_FILE).unlink()
    with pytest.raises(MissingFileError, match=r"model.json does not exist"):
        load_model(tmp_path)


def _rewrite_meta(directory: Path, *, reseal: bool = True, **changes: object) -> None:
    """Edit model.json; ``reseal`` recomputes its description checksum, so that the check
    under test is the one that fires (not the checksum)."""
    meta = json.loads((directory / METADATA_FILE).read_text())
    for key, value in changes.items():
        if value is None:
            del meta[key]
        else:
            meta[key] = value
    if reseal and "description_sha256" in meta:
        meta["description_sha256"] = description_sha256(meta)
    (directory / METADATA_FILE).write_text(json.dumps(meta))


def test_edited_model_json_fails_its_description_checksum(tmp_path: Path) -> None:
    _saved_mlp(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    assert meta["format_version"] == 2
    assert meta["description_sha256"] == description_sha256(meta)
    _rewrite_meta(tmp_path, reseal=False, dataset="mnist")
    with pytest.raises(ChecksumError, match="fails its description checksum"):
        load_model(tmp_path)
    # reformatting is not an edit: the checksum is over canonical JSON
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta, indent=7, sort_keys=True))
    assert load_model(tmp_path)[1]["dataset"] == meta["dataset"]


def test_version_1_model_json_is_still_read_and_validated(tmp_path: Path) -> None:
    _saved_mlp(tmp_path)
    meta = json.loads((tmp_path / METADATA_FILE).read_text())
    del meta["description_sha256"]
    meta["format_version"] = 1
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    assert load_model(tmp_path)[1]["format_version"] == 1
    meta["spec"]["kwargs"] = {"hidden": [500.7]}
    (tmp_path / METADATA_FILE).write_text(json.dumps(meta))
    with pytest.raises(CorruptFileError, match="hidden width must be an integer"):
        load_model(tmp_path)


def test_bad_model_json_is_corrupt(tmp_path: Path) -> None:
    _saved_mlp(tmp_path)
    good = (tmp_path / METADATA_FILE).read_text()
    _rewrite_meta(tmp_path, spec=None)
    with pytest.raises(CorruptFileError, match="missing spec"):
        load_model(tmp_path)
    (tmp_path / METADATA_FILE).write_text(good)
    spec = json.loads(good)["spec"]
    _rewrite_meta(tmp_path, spec={**spec, "name": "resnet"})
    with pytest.raises(CorruptFileError, match="unknown model 'resnet'"):
        load_model(tmp_path)
    (tmp_path / METADATA_FILE).write_text(good)
    _rewrite_meta(tmp_path, format_version=99)
    with pytest.raises(CorruptFileError, match="format_version 99"):
        load_model(tmp_path)
    (tmp_path / METADATA_FILE).write_text("{")
    with pytest.raises(CorruptFileError, match="not valid JSON"):
        load_model(tmp_path)


def test_weights_not_matching_architecture_are_corrupt(tmp_path: Path) -> None:
    _saved_mlp(tmp_path)
    spec = json.loads((tmp_path / METADATA_FILE).read_text())["spec"]
    _rewrite_meta(tmp_path, spec={**spec, "kwargs": {"hidden": [16, 16]}})
    with pytest.raises(
        CorruptFileError,
        match=r"does not match architecture 'mlp'.*missing layers\.5\.weight.*"
        r"layers\.3\.weight has shape \(10, 16\) in the file but \(16, 16\)",
    ):
        load_model(tmp_path)


def test_bare_safetensors_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "plain.safetensors"
    state = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    safetensors.torch.save_file(state, path)
    loaded = load_state_dict_file(path)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    with pytest.raises(ChecksumError):
        load_state_dict_file(path, sha256="0" * 64)
