import pytest
import torch

from scenimefy.losses.adversarial import discriminator_loss, generator_adversarial_loss, lsgan_loss


def test_lsgan_values():
    ones, zeros, half = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.5)
    assert lsgan_loss(ones, True).item() == 0.0
    assert lsgan_loss(ones, False).item() == 1.0
    assert lsgan_loss(zeros, True).item() == 1.0
    assert lsgan_loss(half, True).item() == pytest.approx(0.25)
    assert lsgan_loss(torch.tensor([3.0, -1.0]), True).item() == pytest.approx((4 + 4) / 2)


def test_discriminator_and_generator_sides():
    real, fake = torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3)
    assert discriminator_loss(real, fake).item() == 0.0  # a perfect discriminator
    assert discriminator_loss(fake, real).item() == pytest.approx(1.0)  # 0.5 * (1 + 1)
    assert generator_adversarial_loss(fake).item() == pytest.approx(1.0)
    assert generator_adversarial_loss(real).item() == 0.0


def test_generator_gradient_pushes_fakes_towards_real():
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    generator_adversarial_loss(pred).backward()
    assert (pred.grad < 0).all()  # descending raises the score
