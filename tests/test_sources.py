"""load_module: a user's file.py:NAME with weights, ONNX files and onespike's own directories."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

import onespike
from onespike.io import load_model, save_model
from onespike.sources import ModelSource, load_module, load_weights, model_source
from tests import zoo

ZOO_FILE = Path(zoo.__file__)


def _reference() -> nn.Module:
    torch.manual_seed(3)
    return zoo.MixedCNN(num_classes=4).eval()


def test_class_and_factory_build_with_arguments(tmp_path: Path) -> None:
    model, meta = load_module(f"{ZOO_FILE}:MixedCNN", args={"num_classes": 4})
    assert isinstance(model, zoo.MixedCNN) or type(model).__name__ == "MixedCNN"
    assert model.out.out_features == 4
    assert not model.training
    assert meta == {}
    built, _ = load_module(f"{ZOO_FILE}:mixed_cnn", args={"num_classes": 3})
    assert built.out.out_features == 3


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".pth"])
def test_weights_load_exactly(tmp_path: Path, suffix: str) -> None:
    reference = _reference()
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        safetensors.torch.save_file(reference.state_dict(), path)
    else:
        torch.save(reference.state_dict(), path)
    model, _ = load_module(f"{ZOO_FILE}:MixedCNN", weights=path, args={"num_classes": 4})
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(model(x), reference(x))


def test_checkpoint_dicts_and_data_parallel_prefix(tmp_path: Path) -> None:
    reference = _reference()
    wrapped = tmp_path / "checkpoint.pt"
    torch.save({"epoch": 7, "state_dict": reference.state_dict()}, wrapped)
    prefixed = tmp_path / "dp.pt"
    torch.save({f"module.{k}": v for k, v in reference.state_dict().items()}, prefixed)
    for path in (wrapped, prefixed):
        model, _ = load_module(f"{ZOO_FILE}:MixedCNN", weights=path, args={"num_classes": 4})
        assert torch.equal(model.fc.weight, reference.fc.weight)


def test_pickled_whole_model_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(_reference(), path)
    with pytest.raises(onespike.UnsafeFileError, match=r"state_dict\(\)") as info:
        load_module(f"{ZOO_FILE}:MixedCNN", weights=path, args={"num_classes": 4})
    assert "weights_only" in str(info.value)


def test_mismatched_weights_list_every_problem(tmp_path: Path) -> None:
    state = _reference().state_dict()
    state.pop("fc.bias")
    state["extra.weight"] = torch.zeros(1)
    state["out.weight"] = torch.zeros(5, 24)
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(state, path)
    with pytest.raises(onespike.ModelSourceError) as info:
        load_module(f"{ZOO_FILE}:MixedCNN", weights=path, args={"num_classes": 4})
    text = str(info.value)
    assert "3 problem(s)" in text
    assert "missing fc.bias" in text
    assert "unexpected extra.weight" in text
    assert "out.weight has shape (5, 24) in the file but (4, 24)" in text


def test_bad_sources_are_named(tmp_path: Path) -> None:
    with pytest.raises(onespike.ModelSourceError, match=r"defines .*MixedCNN"):
        load_module(f"{ZOO_FILE}:Nope")
    with pytest.raises(onespike.ModelSourceError, match="num_classes"):
        load_module(f"{ZOO_FILE}:MixedCNN", args={"classes": 3})
    with pytest.raises(onespike.ModelSourceError, match="ClassName"):
        model_source(str(ZOO_FILE))
    with pytest.raises(onespike.MissingFileError):
        model_source(f"{tmp_path / 'absent.py'}:Net")
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\nraise RuntimeError('boom')\n")
    with pytest.raises(onespike.ModelSourceError, match="boom"):
        load_module(f"{broken}:Net")
    returns = tmp_path / "returns.py"
    returns.write_text("def make():\n    return 3\nVALUE = 4\n")
    with pytest.raises(onespike.ModelSourceError, match=r"not a torch\.nn\.Module"):
        load_module(f"{returns}:make")
    with pytest.raises(onespike.ModelSourceError, match=r"not an nn\.Module class"):
        load_module(f"{returns}:VALUE")
    odd = tmp_path / "weights.txt"
    odd.write_text("hello")
    with pytest.raises(onespike.ModelSourceError, match="unknown format"):
        load_weights(odd)
    not_state = tmp_path / "list.pt"
    torch.save([1, 2, 3], not_state)
    with pytest.raises(onespike.ModelSourceError, match="not a state dict"):
        load_weights(not_state)


def test_sibling_imports_work_and_leave_no_trace(tmp_path: Path) -> None:
    (tmp_path / "blocks_helper_mod.py").write_text(
        "from torch import nn\nclass Block(nn.Sequential):\n"
        "    def __init__(self):\n        super().__init__(nn.Flatten(), nn.Linear(4, 2))\n"
    )
    (tmp_path / "net.py").write_text("from blocks_helper_mod import Block\nNet = Block\n")
    import sys

    model, _ = load_module(f"{tmp_path / 'net.py'}:Net")
    assert isinstance(model, nn.Sequential)
    assert str(tmp_path) not in sys.path


def test_user_model_directory_round_trip(tmp_path: Path) -> None:
    """A user's model saved by onespike records its source and is read back with it, never by
    importing what the file names."""
    reference = _reference()
    source = ModelSource("python", ZOO_FILE, "MixedCNN", {"num_classes": 4})
    save_model(tmp_path / "model", reference, source, dataset="mnist", extra={"note": 1})
    with pytest.raises(onespike.ModelSourceError, match="--weights"):
        load_model(tmp_path / "model")
    model, meta = load_module(source, weights=tmp_path / "model")
    assert meta["extra"] == {"note": 1}
    assert meta["dataset"] == "mnist"
    assert torch.equal(model.fc.weight, reference.fc.weight)
    # a changed weights file fails its recorded checksum
    weights = tmp_path / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(onespike.ChecksumError):
        load_module(source, weights=tmp_path / "model")
