"""VGG content loss between the input photo and its translation (the Hosoda setting, ``lambda_vgg 0.2``).

Images arrive in [-1, 1]; torchvision's VGG expects ImageNet-normalised [0, 1] RGB, so they are
mapped with ``(x + 1) / 2`` and then ``(x - mean) / std``. (The reference feeds ``fake + 1/2``,
i.e. x + 0.5, for the translation and skips the ImageNet normalisation; that bug is not copied.)
The feature is taken at ``conv4_4`` (before its ReLU), as the reference does.

Weights: ``"imagenet"`` uses torchvision's ImageNet checkpoint from the torch hub cache
(downloaded when online); a path loads a local state dict (.safetensors, or .pth read with
``weights_only=True``); ``None`` keeps random weights (tests).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DOWNLOAD_TIMEOUT_S = 30


class PerceptualWeightsError(RuntimeError):
    """The VGG weights are needed but neither cached nor downloadable."""


def to_imagenet_input(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] images -> the ImageNet-normalised input of torchvision classifiers."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def _layer_names(features: nn.Sequential) -> list[str]:
    """conv1_1, relu1_1, ..., pool1, conv2_1, ... for the modules of a VGG ``features`` stack."""
    names, block, index = [], 1, 0
    for module in features:
        if isinstance(module, nn.Conv2d):
            index += 1
            names.append(f"conv{block}_{index}")
        elif isinstance(module, nn.ReLU):
            names.append(f"relu{block}_{index}")
        elif isinstance(module, nn.MaxPool2d):
            names.append(f"pool{block}")
            block, index = block + 1, 0
        else:
            names.append(f"{type(module).__name__.lower()}{block}_{index}")
    return names


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "SCENIMEFY_OFFLINE"))


def _imagenet_state_dict(weights_enum) -> dict[str, torch.Tensor]:
    url = weights_enum.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():
        if _offline():
            raise PerceptualWeightsError(
                f"the VGG perceptual loss needs ImageNet weights, which are not cached at {cached} and cannot be "
                f"downloaded offline (HF_HUB_OFFLINE is set). Download {url} to that path, pass a local file as "
                f"the weights setting, or set the VGG loss weight to 0."
            )
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(_DOWNLOAD_TIMEOUT_S)  # fail instead of hanging on a dead network
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=True)
        except OSError as err:
            raise PerceptualWeightsError(
                f"could not download the VGG ImageNet weights from {url} ({err}); put the file at {cached} or pass a "
                f"local weights file"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    return torch.load(cached, map_location="cpu", weights_only=True)


def _file_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise PerceptualWeightsError(f"VGG weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


class VGGPerceptualLoss(nn.Module):
    """MSE between frozen VGG features of two [-1, 1] image batches.

    Args:
        arch: ``"vgg19"`` (reference) or ``"vgg16"``.
        layer: the feature to compare, e.g. ``"conv4_4"`` (reference) or ``"relu3_3"``.
        weights: ``"imagenet"``, a path to a state dict, or ``None`` for random weights.
    """

    def __init__(self, arch: str = "vgg19", layer: str = "conv4_4", weights: str | os.PathLike | None = "imagenet"):
        super().__init__()
        import torchvision.models as tvm  # after `import scenimefy`, which makes torchvision importable
        from torchvision.models.vgg import cfgs, make_layers

        # Only the convolutional stack is built: the classifier (120M of VGG's 140M weights) is unused.
        archs = {"vgg16": ("D", tvm.VGG16_Weights), "vgg19": ("E", tvm.VGG19_Weights)}
        if arch not in archs:
            raise ValueError(f"unknown VGG arch {arch!r}; choose one of {sorted(archs)}")
        cfg, weights_enum = archs[arch]
        features = make_layers(cfgs[cfg])
        if weights == "imagenet":
            state = _imagenet_state_dict(weights_enum.IMAGENET1K_V1)
        elif weights is not None:
            state = _file_state_dict(Path(weights))
        if weights is not None:
            # a full torchvision VGG state dict ("features.0.weight", ...) or a features-only one
            if any(k.startswith("features.") for k in state):
                state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
            features.load_state_dict(state)
        names = _layer_names(features)
        if layer not in names:
            raise ValueError(f"{arch} has no layer {layer!r}; known: {', '.join(names)}")
        self.features = features[: names.index(layer) + 1]
        self.features.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        return super().train(False)  # a frozen feature extractor: never in training mode

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean squared difference of the VGG features of ``output`` and ``target`` (both in [-1, 1])."""
        return F.mse_loss(self.features(to_imagenet_input(output)), self.features(to_imagenet_input(target)))
