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
    BasicBlock,
    ModelSpec,
    Normalize,
    QuartzConvNet,
    ResNet20,
    VGG11Slim,
    VGGSmall,
    build_model,
)


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_names() -> None:
    assert sorted(MODELS) == [
        "convnet-bn",
        "mlp",
        "quartz-convnet",
        "resnet20",
        "vgg-small",
        "vgg11-slim",
    ]


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
        ("resnet20", (1, 28, 28), 10),
        ("vgg11-slim", (1, 28, 28), 10),
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
        ConfigError, match=r"unknown model 'resnet'.*mlp, quartz-convnet, resnet20, vgg-small"
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
    with pytest.raises(ConfigError, match=r"resnet20 needs \(C, 28, 28\)"):
        build_model("resnet20", (3, 32, 32), 10)
    with pytest.raises(ConfigError, match=r"vgg11-slim needs \(C, 28, 28\)"):
        build_model("vgg11-slim", (1, 32, 32), 10)
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


def test_resnet20_layers_and_parameters() -> None:
    model = ResNet20()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    shortcuts = [c for c in convs if c.kernel_size == (1, 1)]
    # 19 convolutions on the main path plus the two projection shortcuts, and one dense layer:
    # the 20 layers of ResNet-20.
    assert len(convs) - len(shortcuts) == 19
    assert [(c.in_channels, c.out_channels, c.stride) for c in shortcuts] == [
        (16, 32, (2, 2)),
        (32, 64, (2, 2)),
    ]
    assert sum(isinstance(m, nn.Linear) for m in model.modules()) == 1
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == len(convs)
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
    assert [isinstance(b.shortcut, nn.Identity) for b in blocks] == [
        True, True, True, False, True, True, False, True, True
    ]  # fmt: skip
    relus = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert len(relus) == 19
    assert len(set(relus)) == 19
    convs_3x3 = 16 * 9 + 6 * 16 * 16 * 9 + 16 * 32 * 9 + 5 * 32 * 32 * 9 + 32 * 64 * 9
    convs_3x3 += 5 * 64 * 64 * 9
    bn = 2 * (16 + 6 * 16 + 7 * 32 + 7 * 64)  # the shortcut BNs: one 32 and one 64 each
    assert _n_params(model) == convs_3x3 + 16 * 32 + 32 * 64 + bn + 64 * 10 + 10 == 272_186


def test_resnet20_stage_sizes_and_global_pooling() -> None:
    model = ResNet20().eval()
    sizes: dict[str, tuple[int, ...]] = {}
    for name in ("stem", "stage1", "stage2", "stage3", "pool"):
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[1:]))
        )
    model(torch.rand(1, 1, 28, 28))
    assert sizes == {
        "stem": (16, 28, 28),
        "stage1": (16, 28, 28),
        "stage2": (32, 14, 14),
        "stage3": (64, 7, 7),
        "pool": (64, 1, 1),
    }
    assert isinstance(model.pool, nn.AvgPool2d)
    assert model.pool.kernel_size == 7
    with pytest.raises(ConfigError, match="3 widths"):
        ResNet20(widths=(16, 32))
    with pytest.raises(ConfigError, match="blocks"):
        ResNet20(blocks=0)


def test_basic_block_adds_the_identity_then_rectifies() -> None:
    block = BasicBlock(2, 2).eval()
    with torch.no_grad():
        block.conv1.weight.zero_()
        block.conv2.weight.zero_()
        block.bn2.bias.fill_(0.5)  # the residual branch is then the constant 0.5
    x = torch.tensor([[[[1.0, -2.0]], [[-0.25, 0.0]]]])
    expected = torch.tensor([[[[1.5, 0.0]], [[0.25, 0.5]]]])  # relu(x + 0.5)
    assert torch.equal(block(x), expected)
    projection = BasicBlock(2, 3, stride=2)
    assert isinstance(projection.shortcut, nn.Sequential)
    assert projection(torch.rand(1, 2, 6, 6)).shape == (1, 3, 3, 3)


def test_vgg11_slim_layers_and_sizes() -> None:
    model = VGG11Slim().eval()
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert all(c.bias is None and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 8
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(128, 128), (128, 128), (128, 10)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert [p.padding for p in pools] == [0, 0, 1, 0, 0]
    sides = []
    for pool in pools:
        pool.register_forward_hook(lambda _m, _i, out: sides.append(out.shape[-1]))
    model(torch.rand(1, 1, 28, 28))
    assert sides == [14, 7, 4, 2, 1]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 2
    assert not any(isinstance(m, nn.Dropout) for m in VGG11Slim(dropout=0.0).modules())
    with pytest.raises(ConfigError, match="hidden"):
        VGG11Slim(hidden=0)
    with pytest.raises(ConfigError, match="8 widths"):
        VGG11Slim(widths=(16, 32))


@pytest.mark.parametrize(
    ("name", "options", "convs", "depth"),
    [
        ("resnet20", {"widths": [2, 3, 4]}, 21, 20),
        ("vgg11-slim", {"widths": [2, 2, 3, 3, 4, 4, 4, 4], "hidden": 6}, 8, 11),
    ],
)
def test_deep_models_extract_and_convert_with_every_method(
    name: str, options: dict[str, object], convs: int, depth: int
) -> None:
    """BatchNorm folds exactly; TTFS, rate and hybrid networks build, and both simulators agree.

    Narrow versions of the architectures keep the stepped simulations short.
    """
    import onespike
    from onespike.evaluate import agreement

    torch.manual_seed(0)
    model, _ = build_model(name, (1, 28, 28), 10, **options)
    model.train()
    with torch.no_grad():  # running statistics that are not the identity
        model(torch.rand(16, 1, 28, 28))
    model.eval()
    x = torch.rand(3, 1, 28, 28)
    graph = onespike.extract(model, x[:2])
    with torch.no_grad():
        assert torch.allclose(onespike.run_graph(graph, x), model(x), atol=1e-5)
    kinds = [type(n).__name__ for n in graph.nodes.values()]
    assert "Affine" not in kinds  # every BatchNorm folded into its convolution
    assert kinds.count("Conv2d") == convs
    assert kinds.count("Add") == (9 if name == "resnet20" else 0)
    graph = onespike.normalize(graph, [x])
    for config in (
        onespike.TTFSConfig(steps=3),
        onespike.RateConfig(steps=4),
        onespike.HybridConfig(steps=2),
    ):
        net = onespike.convert(graph, config)
        assert net.depth == depth
        check = agreement(net, x)
        assert check["identical_spikes"] == 1.0
        assert check["identical_predictions"] == 1.0
    ttfs = onespike.convert(graph, onespike.TTFSConfig(steps=3))
    assert onespike.simulate(ttfs, x).steps == 2 * (depth + 1) + 1  # L (depth + 1) + 1
