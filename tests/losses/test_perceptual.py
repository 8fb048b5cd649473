import time

import pytest
import torch

from scenimefy.losses.perceptual import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PerceptualWeightsError,
    VGGPerceptualLoss,
    to_imagenet_input,
)


def test_preprocessing_maps_minus_one_one_to_imagenet_statistics():
    x = torch.stack([torch.full((3, 2, 2), -1.0), torch.zeros(3, 2, 2), torch.ones(3, 2, 2)])
    y = to_imagenet_input(x)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(y[0, :, 0, 0], -mean / std)  # black
    torch.testing.assert_close(y[1, :, 0, 0], (0.5 - mean) / std)  # mid grey: (0 + 1) / 2, not 0 + 1/2
    torch.testing.assert_close(y[2, :, 0, 0], (1 - mean) / std)  # white


@pytest.fixture(scope="module")
def vgg16_random():
    torch.manual_seed(0)
    return VGGPerceptualLoss("vgg16", layer="relu2_2", weights=None)


def test_random_vgg_loss_is_zero_for_equal_images_and_has_gradients(vgg16_random):
    torch.manual_seed(1)
    a = torch.rand(1, 3, 32, 32) * 2 - 1
    assert vgg16_random(a, a).item() == 0.0
    b = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    loss = vgg16_random(b, a)
    loss.backward()
    assert loss.item() > 0 and b.grad is not None
    assert not any(p.requires_grad for p in vgg16_random.parameters())
    assert not vgg16_random.train().training  # stays frozen


def test_reference_layer_is_conv4_4_of_vgg19():
    loss = VGGPerceptualLoss("vgg19", weights=None)
    assert len(loss.features) == 26  # conv1_1 .. conv4_4, as the reference's features[:26]
    assert isinstance(loss.features[-1], torch.nn.Conv2d) and loss.features[-1].out_channels == 512


def test_unknown_layer_or_arch_is_a_clear_error():
    with pytest.raises(ValueError, match="no layer"):
        VGGPerceptualLoss("vgg16", layer="conv9_9", weights=None)
    with pytest.raises(ValueError, match="unknown VGG arch"):
        VGGPerceptualLoss("resnet50", weights=None)


def test_missing_imagenet_weights_fail_fast_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    start = time.perf_counter()
    with pytest.raises(PerceptualWeightsError, match="not cached"):
        VGGPerceptualLoss("vgg16", weights="imagenet")
    assert time.perf_counter() - start < 30


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(PerceptualWeightsError, match="not found"):
        VGGPerceptualLoss("vgg16", weights=tmp_path / "nope.pth")
