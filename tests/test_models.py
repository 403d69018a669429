"""Model definitions, the registry, build_model and ModelSpec."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from onespike.errors import ConfigError, CorruptFileError
from onespike.models import (
    MLP,
    MODELS,
    ModelSpec,
    Normalize,
    QuartzConvNet,
    VGGSmall,
    build_model,
)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names() -> None:
    assert sorted(MODELS) == ["convnet-bn", "mlp", "quartz-convnet", "vgg-small"]


def test_normalize_is_per_channel_with_buffers() -> None:
    norm = Normalize([0.5, 0.25], [0.5, 0.25])
    assert sorted(dict(norm.named_buffers())) == ["mean", "std"]
    assert list(norm.parameters()) == []
    x = torch.stack([torch.full((3, 3), 1.0), torch.full((3, 3), 0.0)]).unsqueeze(0)
    out = norm(x)
    assert out.shape == (1, 2, 3, 3)
    assert torch.equal(out[0, 0], torch.full((3, 3), 1.0))  # (1 - 0.5) / 0.5
    assert torch.equal(out[0, 1], torch.full((3, 3), -1.0))  # (0 - 0.25) / 0.25
    assert sorted(norm.state_dict()) == ["mean", "std"]


@pytest.mark.parametrize(
    ("mean", "std"), [([0.5], [0.0]), ([0.5, 0.5], [1.0]), ([], []), ([float("nan")], [1.0])]
)
def test_normalize_rejects_bad_values(mean: list[float], std: list[float]) -> None:
    with pytest.raises(ConfigError):
        Normalize(mean, std)


def test_mlp_layers_and_shapes() -> None:
    model = MLP(784)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(784, 500), (500, 500), (500, 10)]
    assert sum(isinstance(m, nn.ReLU) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())
    assert model(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert _n_params(model) == 784 * 500 + 500 + 500 * 500 + 500 + 500 * 10 + 10


def test_mlp_dropout_and_custom_widths() -> None:
    model = MLP(12, hidden=(7,), num_classes=3, dropout=0.2)
    kinds = [type(m).__name__ for m in model.layers]
    assert kinds == ["Flatten", "Linear", "ReLU", "Dropout", "Linear"]
    assert model(torch.rand(5, 3, 2, 2)).shape == (5, 3)
    assert [type(m).__name__ for m in MLP(4, hidden=()).layers] == ["Flatten", "Linear"]


def test_quartz_convnet_shapes() -> None:
    model = QuartzConvNet()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (1, 6, (5, 5)),
        (6, 12, (5, 5)),
        (12, 120, (4, 4)),
    ]
    # 6*25+6 + 12*6*25+12 + 120*12*16+120 + 120*10+10
    assert _n_params(model) == 156 + 1812 + 23160 + 1210
    assert QuartzConvNet(in_channels=3, num_classes=4)(torch.rand(1, 3, 28, 28)).shape == (1, 4)


def test_vgg_small_shapes() -> None:
    model = VGGSmall()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128]
    assert all(c.bias is None and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 6
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 3
    head = model.classifier[-1]
    assert isinstance(head, nn.Linear)
    assert head.in_features == 128 * 4 * 4
    small = VGGSmall(in_channels=1, num_classes=5, widths=(4, 8, 16), dropout=0.0)
    assert small(torch.rand(1, 1, 32, 32)).shape == (1, 5)
    assert not any(isinstance(m, nn.Dropout) for m in small.modules())
    with pytest.raises(ConfigError, match="3 widths"):
        VGGSmall(widths=(8, 16))


@pytest.mark.parametrize(
    ("name", "shape", "out"),
    [
        ("mlp", (1, 8, 8), 10),
        ("mlp", (1, 28, 28), 10),
        ("quartz-convnet", (1, 28, 28), 10),
        ("convnet-bn", (1, 28, 28), 10),
        ("vgg-small", (3, 32, 32), 10),
    ],
)
def test_build_model_shapes(name: str, shape: tuple[int, int, int], out: int) -> None:
    model, spec = build_model(name, shape, 10)
    assert spec == ModelSpec(name, shape, 10, {})
    assert model(torch.rand(2, *shape)).shape == (2, out)


def test_build_model_mlp_infers_input_width() -> None:
    digits, _ = build_model("mlp", (1, 8, 8), 10)
    mnist, _ = build_model("mlp", (1, 28, 28), 10)
    widths = [
        [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
        for model in (digits, mnist)
    ]
    assert widths[0] == [(64, 500), (500, 500), (500, 10)]
    assert widths[1] == [(784, 500), (500, 500), (500, 10)]


def test_build_model_errors() -> None:
    with pytest.raises(
        ConfigError, match=r"unknown model 'resnet'.*mlp, quartz-convnet, vgg-small"
    ):
        build_model("resnet", (1, 28, 28), 10)
    with pytest.raises(ConfigError, match=r"quartz-convnet needs \(C, 28, 28\)"):
        build_model("quartz-convnet", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"convnet-bn needs \(C, 28, 28\)"):
        build_model("convnet-bn", (1, 8, 8), 10)
    with pytest.raises(ConfigError, match="hidden"):
        build_model("convnet-bn", (1, 28, 28), 10, hidden=0)
    with pytest.raises(ConfigError, match=r"vgg-small needs \(C, 32, 32\)"):
        build_model("vgg-small", (3, 28, 28), 10)
    with pytest.raises(ConfigError, match="input_shape"):
        build_model("mlp", (784,), 10)
    with pytest.raises(ConfigError, match="bad arguments"):
        build_model("mlp", (1, 8, 8), 10, depth=3)
    with pytest.raises(ConfigError, match="JSON"):
        build_model("mlp", (1, 8, 8), 10, hidden={4})


def test_model_spec_json_round_trip() -> None:
    model, spec = build_model("mlp", (1, 8, 8), 3, hidden=(16, 8), dropout=0.25)
    text = json.dumps(spec.to_json())
    again = ModelSpec.from_json(json.loads(text))
    assert again == spec
    assert again.to_json() == {
        "name": "mlp",
        "input_shape": [1, 8, 8],
        "num_classes": 3,
        "kwargs": {"hidden": [16, 8], "dropout": 0.25},
    }
    rebuilt = again.build()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in model.state_dict().items()
    }


def test_model_spec_from_json_validates() -> None:
    good = {"name": "mlp", "input_shape": [1, 8, 8], "num_classes": 10, "kwargs": {}}
    with pytest.raises(CorruptFileError, match="missing num_classes"):
        ModelSpec.from_json({k: v for k, v in good.items() if k != "num_classes"})
    with pytest.raises(CorruptFileError, match="input_shape"):
        ModelSpec.from_json({**good, "input_shape": [1, 8]})
    with pytest.raises(CorruptFileError, match="num_classes"):
        ModelSpec.from_json({**good, "num_classes": "ten"})
    with pytest.raises(CorruptFileError, match="kwargs"):
        ModelSpec.from_json({**good, "kwargs": [1, 2]})
    with pytest.raises(CorruptFileError, match="JSON object"):
        ModelSpec.from_json([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown model 'lenet'"):
        ModelSpec.from_json({**good, "name": "lenet"})
    assert ModelSpec.from_json({k: v for k, v in good.items() if k != "kwargs"}).kwargs == {}


def test_models_trace_with_fx_as_layer_modules() -> None:
    for name, shape in [("mlp", (1, 8, 8)), ("quartz-convnet", (1, 28, 28))]:
        model, _ = build_model(name, shape, 10)
        traced = torch.fx.symbolic_trace(model)
        ops = {node.op for node in traced.graph.nodes}
        assert ops == {"placeholder", "call_module", "output"}
