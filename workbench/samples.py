"""Small networks in the style of well-known architectures, and the bundled sample files.

The networks are the bundled samples for ``make run``, the notebooks and the tests:
each exercises the layers and traps of its family (residual adds, depthwise
convolutions, ceil-mode pooling, concat order, PReLU, flatten before Linear).
Each factory has an ``input_shape`` attribute so the CLI can export it without
``--input-shape``.

``bundled_file`` finds the sample files of other frameworks (``data/``: a Caffe
zoo-style model, MXNet models with outputs recorded in MXNet) through the package,
never through the working directory, so a notebook finds them wherever its kernel
runs (``notebooks/`` under ``workbench lab``, the caller's folder under
``workbench record``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from .errors import InputError

PACKAGE_FOLDER = Path(__file__).resolve().parent
# where the sample files live: inside an installed package that ships them, else in
# the repository the package was installed from (``pip install -e .``, a clone)
DATA_FOLDERS = (PACKAGE_FOLDER / "data", PACKAGE_FOLDER.parent / "data")


def bundled_file(relative: str) -> str:
    """The path of a bundled sample file, e.g. ``bundled_file("caffe/zoo_tiny.prototxt")``."""
    for folder in DATA_FOLDERS:
        path = folder / relative
        if path.is_file():
            return str(path)
    raise InputError(
        f"no bundled sample file {relative}",
        expected=f"{relative} in one of {', '.join(str(folder) for folder in DATA_FOLDERS)}",
        found="no such file",
        remedy="install the workbench from its repository (pip install -e .), or pass the path of your own file",
    )


def _with_shape(*shape: int):
    def decorate(factory):
        factory.input_shape = shape
        return factory

    return decorate


def _randomize_batchnorm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics, so folding and eps mistakes show in numbers."""
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)):
            n = layer.num_features
            assert layer.running_mean is not None and layer.running_var is not None  # track_running_stats
            layer.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            layer.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            layer.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)
    return module.eval()


def conv_bn(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: type = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act())


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.layer2(self.layer1(self.pool(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            conv_bn(cin, hidden, 1, act=nn.ReLU6),
            conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        return x + self.block(x) if self.use_residual else self.block(x)


class TinyMobileNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            conv_bn(3, 16, 3, 2, act=nn.ReLU6),
            InvertedResidual(16, 16, 1, 2),
            InvertedResidual(16, 24, 2, 3),
            InvertedResidual(24, 24, 1, 3),
        )
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(24, classes))

    def forward(self, x):
        x = self.features(x).mean((2, 3))
        return self.classifier(x)


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand, 3, padding=1)

    def forward(self, x):
        x = F.relu(self.squeeze(x))
        return torch.cat([F.relu(self.expand1x1(x)), F.relu(self.expand3x3(x))], 1)


class TinySqueezeNet(nn.Module):
    """SqueezeNet 1.0 style: ceil-mode max pooling on odd sizes, global average pool."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, 7, 2),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 8, 16),
            Fire(32, 8, 16),
            nn.MaxPool2d(3, 2, ceil_mode=True),
            Fire(32, 12, 24),
        )
        self.classifier = nn.Sequential(nn.Conv2d(48, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))

    def forward(self, x):
        return torch.flatten(self.classifier(self.features(x)), 1)


class InceptionBlock(nn.Module):
    """GoogLeNet-style block: four branches concatenated in a fixed order."""

    def __init__(self, cin: int = 16) -> None:
        super().__init__()
        self.branch1 = conv_bn(cin, 8, 1)
        self.branch3 = nn.Sequential(conv_bn(cin, 6, 1), conv_bn(6, 12, 3))
        self.branch5 = nn.Sequential(conv_bn(cin, 4, 1), conv_bn(4, 6, 5))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv_bn(cin, 5, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], 1)


class TinyInception(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2)
        self.block = InceptionBlock(16)
        self.pool = nn.AvgPool2d(2, 2)
        self.fc = nn.Linear(31 * 4 * 4, classes)

    def forward(self, x):
        x = self.pool(self.block(self.stem(x)))
        return self.fc(x.view(x.size(0), -1))


class MTCNNLike(nn.Module):
    """MTCNN O-Net style: PReLU, ceil-mode pooling, permute + flatten before Linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3)
        self.prelu1 = nn.PReLU(16)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(16, 32, 3)
        self.prelu2 = nn.PReLU(32)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(32, 32, 2)
        self.prelu3 = nn.PReLU(32)
        self.fc = nn.Linear(32 * 3 * 3, 64)
        self.prelu4 = nn.PReLU(64)
        self.cls = nn.Linear(64, 2)
        self.box = nn.Linear(64, 4)

    def forward(self, x):
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu4(self.fc(x.view(x.size(0), -1)))
        return torch.softmax(self.cls(x), 1), self.box(x)


class ShuffleUnit(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        half = channels // 2
        self.branch = nn.Sequential(
            conv_bn(half, half, 1), conv_bn(half, half, 3, groups=half, act=nn.Identity), conv_bn(half, half, 1)
        )

    def forward(self, x):
        left, right = x.chunk(2, dim=1)
        out = torch.cat([left, self.branch(right)], 1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


class TinyShuffleNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 24, 3, 2)
        self.units = nn.Sequential(ShuffleUnit(24), ShuffleUnit(24))
        self.fc = nn.Linear(24, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.units(self.stem(x)), 1).flatten(1))


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        scale = torch.sigmoid(self.expand(F.silu(self.reduce(x.mean((2, 3), keepdim=True)))))
        return x * scale


class TinyEfficientNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = conv_bn(3, 16, 3, 2, act=nn.SiLU)
        self.dw = conv_bn(16, 16, 3, groups=16, act=nn.SiLU)
        self.se = SqueezeExcite(16, 4)
        self.project = nn.Sequential(nn.Conv2d(16, 24, 1, bias=False), nn.BatchNorm2d(24))
        self.head = conv_bn(24, 32, 1, act=nn.SiLU)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        x = self.head(self.project(self.se(self.dw(self.stem(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class TinySegmentation(nn.Module):
    """Encoder + upsampling decoder with a skip connection (FCN / U-Net style)."""

    def __init__(self, classes: int = 3) -> None:
        super().__init__()
        self.enc1 = conv_bn(3, 8, 3)
        self.enc2 = conv_bn(8, 16, 3, 2)
        self.up = nn.ConvTranspose2d(16, 8, 2, 2)
        self.dec = conv_bn(16, 8, 3)
        self.head = nn.Conv2d(8, classes, 1)

    def forward(self, x):
        skip = self.enc1(x)
        x = self.enc2(skip)
        x = torch.cat([F.interpolate(x, scale_factor=2, mode="nearest")[:, :8] + self.up(x), skip], 1)
        return self.head(self.dec(x))


@_with_shape(1, 3, 32, 32)
def resnet_tiny() -> nn.Module:
    torch.manual_seed(0)
    return _randomize_batchnorm(TinyResNet())


@_with_shape(1, 3, 32, 32)
def mobilenet_tiny() -> nn.Module:
    torch.manual_seed(1)
    return _randomize_batchnorm(TinyMobileNet())


@_with_shape(1, 3, 63, 63)
def squeezenet_tiny() -> nn.Module:
    torch.manual_seed(2)
    return TinySqueezeNet().eval()


@_with_shape(1, 3, 16, 16)
def inception_tiny() -> nn.Module:
    torch.manual_seed(3)
    return _randomize_batchnorm(TinyInception())


@_with_shape(1, 3, 24, 24)
def mtcnn_tiny() -> nn.Module:
    torch.manual_seed(4)
    return MTCNNLike().eval()


@_with_shape(1, 3, 32, 32)
def shufflenet_tiny() -> nn.Module:
    torch.manual_seed(5)
    return _randomize_batchnorm(TinyShuffleNet())


@_with_shape(1, 3, 32, 32)
def efficientnet_tiny() -> nn.Module:
    torch.manual_seed(6)
    return _randomize_batchnorm(TinyEfficientNet())


@_with_shape(1, 3, 32, 32)
def segmentation_tiny() -> nn.Module:
    torch.manual_seed(7)
    return _randomize_batchnorm(TinySegmentation())


sample_net = resnet_tiny
"""The bundled sample used by ``make run`` and the first notebook."""

SAMPLE_NAMES = (
    "resnet_tiny",
    "mobilenet_tiny",
    "squeezenet_tiny",
    "shufflenet_tiny",
    "efficientnet_tiny",
    "segmentation_tiny",
    "inception_tiny",
    "mtcnn_tiny",
)
"""Every sample factory, for tests and benchmarks that run them all."""
