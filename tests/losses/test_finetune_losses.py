"""Stage-1 losses (paper Eq. 1-3) and the StyleGAN2 objective, on hand-built inputs with known values."""

import json
import math
import socket

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scenimefy.losses.clip import (
    PriorWeightsError,
    clip_cosine_distance,
    clip_patch_nce,
    crop_patches,
    load_clip_image_encoder,
    random_patch_boxes,
)
from scenimefy.losses.finetune import finetune_generator_loss, global_loss, load_lpips
from scenimefy.losses.stylegan2 import (
    discriminator_logistic_loss,
    generator_nonsaturating_loss,
    path_length_penalty,
    r1_penalty,
)

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 16, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def clip_encoder(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "tiny-clip-losses.json"
    path.write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    return load_clip_image_encoder(str(path), pretrained=None)


@pytest.fixture(scope="module")
def lpips_model():
    torch.manual_seed(0)
    return load_lpips("alex", pretrained=False)  # random stand-in: downloads nothing


class MeanColour(nn.Module):
    """A stand-in encoder with a closed form: the unit-norm mean colour of each image."""

    def forward(self, images):
        return F.normalize(images.mean(dim=(2, 3)), dim=-1)


def test_clip_encoder_is_frozen_and_resizes(clip_encoder):
    assert not any(p.requires_grad for p in clip_encoder.parameters())
    clip_encoder.train()
    assert not clip_encoder.training
    emb = clip_encoder(torch.rand(2, 3, 40, 40) * 2 - 1)
    assert emb.shape == (2, 16)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))


def test_clip_distance_is_zero_for_identical_images_and_one_minus_cosine_otherwise(clip_encoder):
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert abs(clip_cosine_distance(clip_encoder, x, x).item()) < 1e-6
    expected = (1 - F.cosine_similarity(clip_encoder(x), clip_encoder(y))).mean()
    torch.testing.assert_close(clip_cosine_distance(clip_encoder, x, y), expected)
    assert 0 < expected.item() <= 2


def test_patch_nce_matches_the_closed_form():
    # Source: four flat quadrants; target: the same quadrants with a tint. Crops sit inside quadrants.
    colours = torch.tensor([[1.0, 0.2, 0.1], [0.1, 1.0, 0.3], [0.2, 0.1, 1.0], [0.9, 0.8, 0.1]])
    source = torch.zeros(1, 3, 8, 8)
    for i, (top, left) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        source[0, :, top : top + 4, left : left + 4] = colours[i, :, None, None]
    target = source * torch.tensor([1.0, 0.7, 0.5]).view(1, 3, 1, 1)
    boxes = torch.tensor([[[0, 0], [0, 4], [4, 0], [4, 4]]])
    tau = 0.2
    loss = clip_patch_nce(MeanColour(), source, target, boxes, patch_size=4, temperature=tau)

    keys = F.normalize(colours, dim=-1)
    queries = F.normalize(colours * torch.tensor([1.0, 0.7, 0.5]), dim=-1)
    expected = 0.0
    for i in range(4):  # Eq. 2: -log exp(v.v+/tau) / sum over the positive and every other position
        logits = [float(queries[i] @ keys[j]) / tau for j in range(4)]
        expected += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    assert loss.item() == pytest.approx(expected / 4, rel=1e-5)


def test_crops_are_taken_at_the_same_positions_in_both_images():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    boxes = random_patch_boxes(2, 6, 3, 5, generator=torch.Generator().manual_seed(0))
    assert boxes.shape == (2, 5, 2) and boxes.min() >= 0 and boxes.max() <= 3
    crops = crop_patches(images, boxes, 3)
    top, left = boxes[1, 2].tolist()
    torch.testing.assert_close(crops[5 + 2], images[1, :, top : top + 3, left : left + 3])
    with pytest.raises(ValueError, match="patch_size"):
        random_patch_boxes(1, 6, 7, 1)


def test_lpips_stand_in_and_global_loss(clip_encoder, lpips_model):
    torch.manual_seed(2)
    x, y = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    assert not any(p.requires_grad for p in lpips_model.parameters())
    assert lpips_model(x, x).abs().max().item() == 0.0
    loss, parts = global_loss(clip_encoder, lpips_model, x, y, lambda_lpips=0.01)
    torch.testing.assert_close(parts["clip"], clip_cosine_distance(clip_encoder, x, y))
    torch.testing.assert_close(parts["lpips"], lpips_model(x, y).mean())
    torch.testing.assert_close(loss, parts["clip"] + 0.01 * parts["lpips"])  # Eq. 1


def test_finetune_loss_composes_eq3_and_reaches_the_target_only(clip_encoder, lpips_model):
    torch.manual_seed(3)
    source = torch.rand(2, 3, 32, 32) * 2 - 1
    target = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    logits = torch.zeros(2, 1)
    terms = finetune_generator_loss(
        logits,
        source,
        target,
        clip_encoder,
        lpips_model,
        lambda_global=1.0,
        lambda_lpips=0.01,
        lambda_patch=0.05,
        num_patches=4,
        patch_size=8,
        generator=torch.Generator().manual_seed(0),
    )
    assert terms["gan"].item() == pytest.approx(math.log(2))  # softplus(0)
    torch.testing.assert_close(terms["loss"], terms["gan"] + terms["global"] + 0.05 * terms["patch"])
    terms["loss"].backward()
    assert target.grad is not None and target.grad.abs().sum() > 0
    no_patch = finetune_generator_loss(logits, source, source, clip_encoder, lpips_model, lambda_patch=0.0)
    assert no_patch["patch"].item() == 0.0 and abs(no_patch["global"].item()) < 1e-6


def test_stylegan_objective_closed_forms():
    zeros = torch.zeros(4, 1)
    assert discriminator_logistic_loss(zeros, zeros).item() == pytest.approx(2 * math.log(2))
    assert generator_nonsaturating_loss(torch.full((3, 1), 50.0)).item() == pytest.approx(0.0, abs=1e-6)
    # D(x) = <a, x>: the gradient is a for every sample, so R1 = ||a||^2.
    a = torch.randn(3, 4, 4)
    real = torch.randn(2, 3, 4, 4, requires_grad=True)
    assert r1_penalty((real * a).flatten(1).sum(1, keepdim=True), real).item() == pytest.approx(
        a.square().sum().item(), rel=1e-5
    )
    # Images linear in the latents: J^T y = (sum of the noise y of sample b) in every entry, so the
    # path length of sample b is sqrt(D) * |sum y_b| (D = 5 latent dims, averaged over 3 layers).
    latents = torch.randn(2, 3, 5, requires_grad=True)
    images = latents.sum(dim=(1, 2)).view(2, 1, 1, 1).expand(2, 3, 4, 4)
    torch.manual_seed(0)
    penalty, new_mean, batch_mean = path_length_penalty(images, latents, mean_path_length=0.5, decay=0.1)
    torch.manual_seed(0)
    noise_sums = (torch.randn(2, 3, 4, 4) / 4).sum(dim=(1, 2, 3))
    lengths = math.sqrt(5) * noise_sums.abs()
    assert batch_mean.item() == pytest.approx(lengths.mean().item(), rel=1e-5)
    assert new_mean.item() == pytest.approx(0.5 + 0.1 * (lengths.mean().item() - 0.5), rel=1e-5)
    assert penalty.item() == pytest.approx((lengths - new_mean).square().mean().item(), rel=1e-5)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails (as it would offline)."""

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_lpips_stand_in_downloads_nothing_and_missing_weights_fail_clearly(no_network, monkeypatch, tmp_path):
    assert isinstance(load_lpips("alex", pretrained=False), nn.Module)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch hub cache
    with pytest.raises(PriorWeightsError, match="ImageNet alex weights"):
        load_lpips("alex", pretrained=True)


def test_missing_clip_weights_fail_fast_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = tmp_path / "tiny-clip-offline.json"
    path.write_text(json.dumps(TINY_CLIP))
    with pytest.raises(PriorWeightsError):
        load_clip_image_encoder(str(path), pretrained="openai")
    with pytest.raises(ValueError, match="unknown open_clip model"):
        load_clip_image_encoder("no-such-model", pretrained=None)
