"""The PatchGAN and its losses."""

import pytest
import torch

from hf_simvq.training.discriminator import build_discriminator, generator_loss, hinge_discriminator_loss


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_smallest_accepted_image_still_gets_a_patch_logit(num_layers):
    discriminator = build_discriminator(3, num_layers, image_size=3 * 2**num_layers)
    logits = discriminator(torch.randn(2, 3, 3 * 2**num_layers, 3 * 2**num_layers))
    assert logits.shape[0] == 2 and logits.shape[1] == 1 and min(logits.shape[2:]) >= 1


def test_too_small_images_are_refused_with_the_fix():
    with pytest.raises(
        ValueError, match=r"A 3-layer PatchGAN needs images of at least 24px; use a larger --resolution"
    ):
        build_discriminator(3, 3, image_size=16)


def test_hinge_loss_stops_at_the_margin_and_generator_losses_push_fake_logits_up():
    confident = hinge_discriminator_loss(torch.full((4,), 2.0), torch.full((4,), -2.0))
    unsure = hinge_discriminator_loss(torch.zeros(4), torch.zeros(4))
    assert confident.item() == 0.0 and unsure.item() == pytest.approx(1.0)
    for kind in ("non-saturating", "hinge"):
        assert generator_loss(torch.full((4,), 1.0), kind) < generator_loss(torch.full((4,), -1.0), kind)
