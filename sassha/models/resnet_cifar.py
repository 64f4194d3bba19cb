"""CIFAR ResNets (He et al., 2016, Sec. 4.2) and Wide ResNets (Zagoruyko & Komodakis, 2016).

``cifar_resnet(depth)`` is the 6n+2 CIFAR family (ResNet-20/32/44/56/110) with 3x3 stages of
16, 32 and 64 filters and the parameter-free shortcut of option A: where the shape changes, the
identity is subsampled with stride 2 and zero-padded in channels. That is the variant whose
parameter counts the ResNet paper reports (0.27M for ResNet-20, 0.46M for ResNet-32).

``wide_resnet(depth, widen)`` is the pre-activation WRN-d-k with 1x1 convolution shortcuts
where the shape changes (36.5M parameters for WRN-28-10).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


class _ShortcutA(nn.Module):
    """Option A: stride-2 subsampling plus zero channels, no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride = stride
        self.pad = planes - in_planes

    def forward(self, x):
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut: nn.Module = _ShortcutA(in_planes, planes, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int = 20, num_classes: int = 10, width: int = 16):
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (got {depth})")
        n = (depth - 2) // 6
        w = int(width)
        self.conv1 = nn.Conv2d(3, w, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        layers: list[nn.Module] = []
        in_planes = w
        for stage, planes in enumerate((w, 2 * w, 4 * w)):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(BasicBlock(in_planes, planes, stride))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(4 * w, num_classes)
        _init_weights(self)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def cifar_resnet(depth: int, num_classes: int, width: int = 16) -> CifarResNet:
    """ResNet-``depth`` for 32x32 inputs (option-A shortcuts); ``width`` is the first stage's."""
    return CifarResNet(depth=depth, num_classes=num_classes, width=width)


class WideBasic(nn.Module):
    """Pre-activation block: BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3."""

    def __init__(self, in_planes: int, planes: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.equal = in_planes == planes and stride == 1
        self.shortcut = (
            None if self.equal else nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False)
        )

    def forward(self, x):
        o = F.relu(self.bn1(x))
        # The projection shortcut reads the pre-activated input, as in the reference WRN.
        shortcut = x if self.shortcut is None else self.shortcut(o)
        out = self.conv1(o)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        return out + shortcut


class WideResNet(nn.Module):
    def __init__(self, depth: int = 28, widen: int = 10, num_classes: int = 100, dropout=0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"Wide ResNet depth must be 6n+4 with n >= 1 (got {depth})")
        n = (depth - 4) // 6
        widths = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=1, padding=1, bias=False)
        layers: list[nn.Module] = []
        in_planes = widths[0]
        for stage, planes in enumerate(widths[1:]):
            for i in range(n):
                stride = 2 if (stage > 0 and i == 0) else 1
                layers.append(WideBasic(in_planes, planes, stride, float(dropout)))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_planes)
        self.fc = nn.Linear(in_planes, num_classes)
        _init_weights(self)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        out = F.relu(self.bn(out))
        out = torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)
        return self.fc(out)


def wide_resnet(depth: int, widen: int, num_classes: int, dropout: float = 0.0) -> WideResNet:
    """WRN-``depth``-``widen`` for 32x32 inputs (pre-activation, 1x1 projection shortcuts)."""
    return WideResNet(depth=depth, widen=widen, num_classes=num_classes, dropout=dropout)
