"""Networks used only in training: SN-PatchGAN discriminators, the VGG19 content network and the
expression regressor of DCT-Net's facial perception loss."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import spectral_norm

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class PatchDiscriminator(nn.Module):
    """White-box/DCT-Net SN-PatchGAN: 3 × [conv3×3 stride 2 + LReLU, conv3×3 + LReLU] with 32, 64,
    128 channels, then a 1×1 convolution to one logit per patch. Spectral norm on every conv.

    Shapes: ``(B, C, H, W)`` -> ``(B, 1, H/8, W/8)``.
    """

    def __init__(self, in_channels: int = 3, channels: int = 32) -> None:
        super().__init__()
        layers, cin = [], in_channels
        for i in range(3):
            cout = channels * 2**i
            layers += [spectral_norm(nn.Conv2d(cin, cout, 3, 2, 1)), nn.LeakyReLU(0.2),
                       spectral_norm(nn.Conv2d(cout, cout, 3, 1, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        layers.append(spectral_norm(nn.Conv2d(cin, 1, 1)))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ContentNet(nn.Module):
    """VGG19 up to conv4_4 (before its ReLU), frozen. Input ``(B, 3, H, W)`` RGB in [-1, 1].

    ``kind="vgg19"`` loads torchvision's ImageNet weights (downloaded once by torchvision);
    ``kind="random"`` uses a fixed random initialisation: no download, for offline runs and
    tests. Its features still tie output structure to the photo, but less semantically.
    """

    def __init__(self, kind: str = "vgg19", seed: int = 0) -> None:
        super().__init__()
        from torchvision.models import VGG19_Weights, vgg19

        if kind == "vgg19":
            try:
                model = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
            except Exception as exc:  # no network, blocked download, corrupt cache
                raise RuntimeError(f"cannot load torchvision's pretrained VGG19 ({exc}); connect once to download "
                                   "it, or train offline with --content-net random") from None
        elif kind == "random":
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = vgg19(weights=None)
        else:
            raise ValueError(f"content net must be 'vgg19' or 'random', got {kind!r}")
        self.features = model.features[:26].eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(((x + 1) / 2 - self.mean) / self.std)


class ExpressionRegressor(nn.Module):
    """Small PatchGAN-style regressor of 3 expression values (image-left eye, image-right eye and
    mouth opening: height / width of their landmark boxes) from a face image in [-1, 1]."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        layers, cin = [], 3
        for i in range(4):
            cout = channels * 2 ** min(i, 2)
            layers += [nn.Conv2d(cin, cout, 3, 2, 1), nn.LeakyReLU(0.2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(cin, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean((2, 3)))
