"""Small models for the embedded digits workloads (8x8 grey images, 10 classes)."""

from __future__ import annotations

from torch import nn


class DigitsCNN(nn.Module):
    """Conv-BN-ReLU x3 with one 2x2 pooling, global average pooling and a linear head.

    BatchNorm is deliberate: it exercises the optimizers' BatchNorm contract (running
    statistics updated by the unperturbed pass only) on a model that trains in seconds.
    """

    def __init__(self, num_classes: int = 10, width: int = 16, in_channels: int = 1):
        super().__init__()
        w = int(width)

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.features = nn.Sequential(
            *block(in_channels, w),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    """A plain ReLU multilayer perceptron on flattened inputs."""

    def __init__(
        self, in_features: int = 64, num_classes: int = 10, width: int = 128, depth: int = 2
    ):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d_in = int(in_features)
        for _ in range(int(depth)):
            layers += [nn.Linear(d_in, int(width)), nn.ReLU(inplace=True)]
            d_in = int(width)
        layers.append(nn.Linear(d_in, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)
