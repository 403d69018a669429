"""ONNX import: exported PyTorch models equal their traced graphs; hand-built graphs equal the
onnx package's reference evaluator; refusals name every unsupported node."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import onespike
from onespike.graph import AvgPool2d, Concat, Linear, ReLU
from tests import zoo

onnx = pytest.importorskip("onnx")
helper = onnx.helper
TensorProto = onnx.TensorProto


def _export(model: nn.Module, shape: tuple[int, ...], path: Path, **options: object) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, *shape),), str(path), **options)  # type: ignore[arg-type]
    return path


def _snn(graph: onespike.Graph, x: torch.Tensor) -> onespike.SimResult:
    net = onespike.convert(onespike.normalize(graph, [x]), onespike.TTFSConfig(steps=8))
    return onespike.simulate(net, x)


def test_exported_model_without_folding_gives_identical_graph(tmp_path: Path) -> None:
    """BatchNorm kept as a node: the ONNX graph folds it exactly as extract does, bit for bit."""
    torch.manual_seed(0)
    model = zoo.randomise_batchnorm(zoo.MixedCNN(pool=7))
    path = _export(
        model,
        (1, 28, 28),
        tmp_path / "m.onnx",
        dynamo=False,
        opset_version=17,
        do_constant_folding=False,
        training=torch.onnx.TrainingMode.PRESERVE,
    )
    x = torch.rand(16, 1, 28, 28)
    imported = onespike.from_onnx(path)
    traced = onespike.extract(model, x[:2])
    assert torch.equal(onespike.run_graph(imported, x), onespike.run_graph(traced, x))
    a, b = _snn(imported, x), _snn(traced, x)
    assert torch.equal(a.predictions, b.predictions)
    assert torch.equal(a.outputs, b.outputs)


def test_exported_model_with_folding_gives_the_same_predictions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = zoo.randomise_batchnorm(zoo.MixedCNN(pool=7))
    path = _export(model, (1, 28, 28), tmp_path / "m.onnx", dynamo=False, opset_version=13)
    x = torch.rand(16, 1, 28, 28)
    imported = onespike.from_onnx(path)
    traced = onespike.extract(model, x[:2])
    assert torch.allclose(onespike.run_graph(imported, x), model(x), atol=1e-5)
    assert torch.equal(_snn(imported, x).predictions, _snn(traced, x).predictions)


def test_dynamo_export_of_a_residual_network(tmp_path: Path) -> None:
    """The default (torch.export) exporter, dynamic batch, functional pooling and view."""
    torch.manual_seed(0)
    model = zoo.randomise_batchnorm(zoo.ResNet18(width=2))
    path = _export(model, (3, 32, 32), tmp_path / "r.onnx", dynamo=True)
    x = torch.rand(4, 3, 32, 32)
    imported = onespike.from_onnx(path)
    assert torch.allclose(onespike.run_graph(imported, x), model(x), atol=1e-4)
    module, meta = onespike.load_module(path)
    assert meta == {}
    assert onespike.extract(module, x) is module.graph


def _model(nodes: list, inputs: list, output: object, inits: list, opset: int = 13) -> object:
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _init(name: str, value: np.ndarray) -> object:
    return onnx.numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def _int64(name: str, value: list[int]) -> object:
    return onnx.numpy_helper.from_array(np.asarray(value, dtype=np.int64), name)


def _reference(model: object, x: np.ndarray) -> np.ndarray:
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(model).run(None, {"x": x})[0]


def test_hand_built_graph_matches_the_reference_evaluator(tmp_path: Path) -> None:
    """Normalisation as Sub/Div, Conv, Clip(0, c), a branch concatenated, Sum, global pooling,
    the exporters' Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain, MatMul + Add,
    Dropout, Identity."""
    rng = np.random.default_rng(0)
    c1, c2 = rng.normal(size=(3, 2, 3, 3)), rng.normal(size=(3, 3, 1, 1))
    nodes = [
        helper.make_node("Sub", ["x", "mean"], ["centred"]),
        helper.make_node("Div", ["centred", "std"], ["normed"]),
        helper.make_node("Conv", ["normed", "w1", "b1"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["conv", "zero", "six"], ["act"]),
        helper.make_node("Conv", ["act", "w2"], ["branch"]),
        helper.make_node("Relu", ["branch"], ["branch_act"]),
        helper.make_node("Sum", ["act", "branch_act", "act"], ["summed"]),
        helper.make_node("Relu", ["summed"], ["summed_act"]),
        helper.make_node("Concat", ["act", "summed_act"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["pooled"]),
        helper.make_node("Shape", ["pooled"], ["shape"]),
        helper.make_node("Gather", ["shape", "index0"], ["batch"], axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes0"], ["batch1"]),
        helper.make_node("Concat", ["batch1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["pooled", "target"], ["flat"]),
        helper.make_node("Dropout", ["flat"], ["dropped"]),
        helper.make_node("Identity", ["dropped"], ["same"]),
        helper.make_node("MatMul", ["same", "w3"], ["mm"]),
        helper.make_node("Add", ["mm", "b3"], ["logits"]),
    ]
    inits = [
        _init("mean", np.array([0.5, 0.25]).reshape(1, 2, 1, 1)),
        _init("std", np.array([0.5, 2.0]).reshape(1, 2, 1, 1)),
        _init("w1", c1),
        _init("b1", rng.normal(size=3)),
        _init("zero", np.array(0.0)),
        _init("six", np.array(1.5)),
        _init("w2", c2),
        onnx.numpy_helper.from_array(np.asarray(0, dtype=np.int64), "index0"),
        _int64("axes0", [0]),
        _int64("minus1", [-1]),
        _init("w3", rng.normal(size=(6, 4))),
        _init("b3", rng.normal(size=4)),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])
    y_info = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])
    model = _model(nodes, [x_info], y_info, inits)
    onnx.checker.check_model(model)
    path = tmp_path / "hand.onnx"
    onnx.save(model, str(path))

    graph = onespike.from_onnx(path)
    kinds = {type(n) for n in graph.nodes.values()}
    assert {Concat, AvgPool2d, Linear, ReLU} <= kinds
    assert [n.max_value for n in graph.nodes.values() if isinstance(n, ReLU)].count(1.5) == 1
    x = np.random.default_rng(1).random((5, 2, 6, 6), dtype=np.float32)
    expected = torch.from_numpy(_reference(model, x))
    assert torch.allclose(onespike.run_graph(graph, torch.from_numpy(x)), expected, atol=1e-5)
    # Sub/Div before the padded conv: the normalisation stays a separate (exact) Affine node
    assert sum(type(n).__name__ == "Affine" for n in graph.nodes.values()) == 1
    _snn(graph, torch.from_numpy(x))


def test_unsupported_nodes_are_listed_together(tmp_path: Path) -> None:
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Sigmoid", ["c"], ["s"], name="gate"),
        helper.make_node("LeakyRelu", ["s"], ["l"], name="leaky"),
        helper.make_node("Clip", ["l", "minus", "one"], ["clipped"], name="tanhish"),
        helper.make_node("Flatten", ["clipped"], ["f"]),
        helper.make_node("Gemm", ["f", "g"], ["y"], transB=1),
    ]
    inits = [
        _init("w", np.ones((2, 1, 3, 3))),
        _init("minus", np.array(-1.0)),
        _init("one", np.array(1.0)),
        _init("g", np.ones((3, 8))),
    ]
    model = _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
        inits,
    )
    path = tmp_path / "bad.onnx"
    onnx.save(model, str(path))
    with pytest.raises(onespike.UnsupportedLayerError) as info:
        onespike.from_onnx(path)
    assert len(info.value.places) == 3
    text = str(info.value)
    assert "'gate'" in text
    assert "Sigmoid" in text
    assert "LeakyRelu" in text
    assert "Clip" in text


def test_refusals_name_file_and_fix(tmp_path: Path) -> None:
    def save(nodes: list, inits: list, shape: list, opset: int = 13, name: str = "m") -> Path:
        model = _model(
            nodes,
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            inits,
            opset,
        )
        path = tmp_path / f"{name}.onnx"
        onnx.save(model, str(path))
        return path

    relu = [helper.make_node("Relu", ["x"], ["y"])]
    with pytest.raises(onespike.UnsupportedLayerError, match="opset 12"):
        onespike.from_onnx(save(relu, [], [1, 3], opset=12))
    symbolic = save(relu, [], ["N", "F"], name="sym")
    with pytest.raises(onespike.ShapeError, match="input_shape"):
        onespike.from_onnx(symbolic)
    assert onespike.from_onnx(symbolic, input_shape=(3,)).input_shape == (3,)
    with pytest.raises(onespike.ShapeError, match="not"):
        onespike.from_onnx(save(relu, [], [1, 3], name="fixed"), input_shape=(4,))
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not an onnx model at all")
    with pytest.raises(onespike.CorruptFileError):
        onespike.from_onnx(garbage)
    with pytest.raises(onespike.MissingFileError):
        onespike.from_onnx(tmp_path / "absent.onnx")
    # external data must stay beside the file
    weights = onnx.numpy_helper.from_array(np.ones((2, 3), dtype=np.float32), "w")
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    weights.ClearField("raw_data")
    outside = save([helper.make_node("Gemm", ["x", "w"], ["y"], transB=1)], [weights], [1, 3],
                   name="outside")  # fmt: skip
    with pytest.raises(onespike.CorruptFileError, match="outside the model's directory"):
        onespike.from_onnx(outside)
