"""A tiny CNN used by tests and the smoke demo: image in, L2-normalised embedding out."""

from __future__ import annotations

import torch
from edgecart.runtime.manifest import IOSpec, TensorSpec
from torch import nn


class TinyCNN(nn.Module):
    """Two conv blocks and a linear head; ~5k parameters at the defaults."""

    def __init__(self, in_channels: int = 1, size: int = 28, dim: int = 16, width: int = 8) -> None:
        super().__init__()
        self.size, self.in_channels, self.dim = size, in_channels, dim
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.head = nn.Linear(2 * width, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.head(torch.flatten(self.features(x), 1))
        return nn.functional.normalize(z, dim=1)

    @property
    def io_spec(self) -> IOSpec:
        return IOSpec(
            inputs=(TensorSpec("image", "float32", (1, self.in_channels, self.size, self.size), "NCHW"),),
            outputs=(TensorSpec("embedding", "float32", (1, self.dim), "NC"),),
        )
