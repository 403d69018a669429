"""Classifiers written the way they appear in the wild, at test-sized widths.

Each follows the code people copy: the CIFAR ResNet-18 with functional pooling and ``view``,
torchvision-style VGG with BatchNorm, Dropout and ``AdaptiveAvgPool2d((7, 7))``, MobileNetV2
(ReLU6, depthwise convolutions, inverted residuals, ``adaptive_avg_pool2d`` + ``flatten``), a
DenseNet with ``torch.cat`` and pre-activation BatchNorm, an Inception-style block, and a small
MNIST CNN mixing functional and module layers. The file is also imported by the command line
tests as a user's ``file.py:NAME``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


# ---- CIFAR ResNet-18 (the widely copied "BasicBlock" version) --------------------------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ResNet18(nn.Module):
    def __init__(self, width: int = 64, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(width, 2, 1)
        self.layer2 = self._make_layer(2 * width, 2, 2)
        self.layer3 = self._make_layer(4 * width, 2, 2)
        self.layer4 = self._make_layer(8 * width, 2, 2)
        self.linear = nn.Linear(8 * width, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        return self.linear(out)


def resnet_deep(blocks: int = 100, width: int = 16, num_classes: int = 10) -> nn.Module:
    """A CIFAR-style residual network of ``blocks`` basic blocks in three stages."""
    net = ResNet18(width=width, num_classes=num_classes)
    net.in_planes = width
    per_stage = [blocks // 3 + (1 if i < blocks % 3 else 0) for i in range(3)]
    net.layer1 = net._make_layer(width, per_stage[0], 1)
    net.layer2 = net._make_layer(2 * width, per_stage[1], 2)
    net.layer3 = net._make_layer(4 * width, per_stage[2], 2)
    net.layer4 = nn.Sequential()
    net.linear = nn.Linear(4 * width * 4, num_classes)  # avg_pool2d(8x8, 4) leaves 2x2
    return net


# ---- torchvision-style VGG -------------------------------------------------------------------
VGG_CONFIGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
}


class VGG(nn.Module):
    def __init__(
        self, config: str = "vgg11", width: float = 1.0, num_classes: int = 10, hidden: int = 4096
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in VGG_CONFIGS[config]:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out = max(1, int(int(item) * width))
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out)]
                layers.append(nn.ReLU(inplace=True))
                channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, hidden),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(True),
            nn.Dropout(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---- MobileNetV2 -----------------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1):
        padding = (kernel - 1) // 2
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(ConvBNReLU(cin, hidden, kernel=1))
        layers += [
            ConvBNReLU(hidden, hidden, stride=stride, groups=hidden),  # depthwise
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        settings = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 2, 2], [6, 96, 1, 1]]
        cin = max(4, int(32 * width))
        last = max(8, int(1280 * width))
        features: list[nn.Module] = [ConvBNReLU(in_channels, cin, stride=2)]
        for t, c, n, s in settings:
            cout = max(4, int(c * width))
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNReLU(cin, last, kernel=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(last, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1))
        x = torch.flatten(x, 1)
        return self.classifier(x)


# ---- DenseNet (pre-activation, concatenation) ------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        new = self.conv(F.relu(self.bn(x)))
        return torch.cat([x, new], 1)


class Transition(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    def __init__(self, growth: int = 4, layers: int = 3, num_classes: int = 10) -> None:
        super().__init__()
        channels = 2 * growth
        self.conv1 = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for stage in range(2):
            for _ in range(layers):
                blocks.append(DenseLayer(channels, growth))
                channels += growth
            if stage == 0:
                blocks.append(Transition(channels, channels // 2))
                channels //= 2
        self.dense = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(channels)
        self.linear = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dense(self.conv1(x))
        out = F.adaptive_avg_pool2d(F.relu(self.bn(out)), 1)
        return self.linear(out.view(out.size(0), -1))


# ---- Inception-style block: concatenated branches, then max pooling --------------------------
class Inception(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU())
        self.b1 = nn.Sequential(nn.Conv2d(6, 4, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(6, 3, 1), nn.ReLU(), nn.Conv2d(3, 5, 3, padding=1))
        self.pool = nn.MaxPool2d(3, stride=1, padding=1)
        self.bp = nn.Conv2d(6, 3, 1)
        self.head = nn.Linear(12 * 4 * 4, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        out = torch.cat([self.b1(x), F.relu(self.b3(x)), F.relu(self.bp(self.pool(x)))], dim=1)
        out = F.max_pool2d(out, 2)  # max pooling of a concatenation
        out = F.adaptive_avg_pool2d(out, (4, 4))
        return self.head(torch.flatten(out, 1))


# ---- MNIST-sized CNN mixing functional and module layers -------------------------------------
class MixedCNN(nn.Module):
    """conv -> F.relu -> F.max_pool2d (or F.avg_pool2d) -> depthwise conv -> ReLU6 ->
    conv (no bias) -> clamp -> adaptive pooling to ``pool`` x ``pool`` (3: irregular windows
    on the 7x7 map of 28x28 input; ONNX export needs a divisor of 7) -> view -> Dropout ->
    Linear."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        width: int = 6,
        pool: int = 3,
        downsample: str = "max",
    ) -> None:
        super().__init__()
        self.pool = pool
        self.max_pool = downsample == "max"
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.bn = nn.BatchNorm2d(width)
        self.act = nn.ReLU6()
        self.conv3 = nn.Conv2d(width, 2 * width, 1, bias=False)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(2 * width * pool * pool, 24)
        self.out = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(x, 2) if self.max_pool else F.avg_pool2d(x, 2)
        x = self.act(self.bn(self.dw(x)))
        x = torch.clamp(self.conv3(x), 0, 4)
        x = F.adaptive_avg_pool2d(x, self.pool)
        x = self.drop(x.view(x.size(0), -1))
        return self.out(F.relu(self.fc(x)))


def mixed_cnn(num_classes: int = 10) -> nn.Module:
    """A factory function, as a user's file may offer instead of a class."""
    return MixedCNN(num_classes=num_classes)


def randomise_batchnorm(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model.eval()
