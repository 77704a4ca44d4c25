"""LPIPS plumbing, tested with GENERATED weight files: the ImageNet VGG16 weights do not exist offline here, so these
tests check key layout, taps, normalisation and error handling, not the perceptual quality of real weights."""

import pytest
import torch
import torch.nn.functional as F

from hf_simvq.evaluation.lpips_network import (
    LPIPS_CHANNELS,
    LPIPS_SCALE,
    LPIPS_SHIFT,
    LPIPSWeightsNotFoundError,
    build_vgg16_features,
    load_lpips,
    lpips_linear_weights_path,
)
from hf_simvq.evaluation.metrics import load_metric


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory):
    """A torchvision-style VGG16 state dict (random values, plus a classifier key LPIPS must ignore) and LPIPS heads
    keyed as in the lpips package, where only the first head (relu1_2) is non-zero."""
    folder = tmp_path_factory.mktemp("lpips_weights")
    torch.manual_seed(0)
    vgg = {f"features.{key}": value for key, value in build_vgg16_features().state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)
    heads = {
        f"lin{index}.model.1.weight": torch.zeros(1, channels, 1, 1) for index, channels in enumerate(LPIPS_CHANNELS)
    }
    heads["lin0.model.1.weight"] = torch.rand(1, 64, 1, 1)
    torch.save(vgg, folder / "vgg16.pth")
    torch.save(heads, folder / "vgg.pth")
    return folder / "vgg16.pth", folder / "vgg.pth", vgg, heads


@pytest.fixture(scope="module")
def lpips_model(weight_files):
    vgg_path, heads_path, _, _ = weight_files
    return load_lpips(vgg_path, heads_path, allow_download=False)


def images(seed: int) -> torch.Tensor:
    return torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_weights_load_under_torchvision_keys(lpips_model, weight_files):
    _, _, vgg, heads = weight_files
    torch.testing.assert_close(lpips_model.features[28].weight, vgg["features.28.weight"])
    torch.testing.assert_close(lpips_model.linear_heads[0].weight, heads["lin0.model.1.weight"])


def test_distance_matches_a_direct_computation_of_the_first_tap(lpips_model, weight_files):
    """With only the relu1_2 head non-zero, LPIPS is the head-weighted squared difference of unit-normalised
    relu(conv(relu(conv(scaled image)))) activations, averaged over positions."""
    _, _, vgg, heads = weight_files
    shift, scale = torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1)

    def relu1_2(x):
        x = F.relu(F.conv2d((x - shift) / scale, vgg["features.0.weight"], vgg["features.0.bias"], padding=1))
        x = F.relu(F.conv2d(x, vgg["features.2.weight"], vgg["features.2.bias"], padding=1))
        return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + 1e-10)

    x, y = images(0), images(1)
    weights = heads["lin0.model.1.weight"].view(1, -1, 1, 1)
    expected = ((relu1_2(x) - relu1_2(y)).pow(2) * weights).sum(dim=1).mean(dim=(1, 2))
    torch.testing.assert_close(lpips_model(x, y), expected)


def test_distance_is_zero_for_equal_images_symmetric_and_differentiable_in_the_inputs(lpips_model):
    x, y = images(0), images(1).requires_grad_()
    assert lpips_model(x, x).abs().max() < 1e-6
    distance = lpips_model(x, y)
    assert (distance > 0).all()
    torch.testing.assert_close(distance, lpips_model(y, x))
    distance.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(parameter.grad is None for parameter in lpips_model.parameters())
    assert not lpips_model.train().training  # a fixed metric: no dropout, ever


def test_missing_or_foreign_weights_raise_clear_errors(tmp_path, weight_files):
    _, heads_path, _, _ = weight_files
    with pytest.raises(LPIPSWeightsNotFoundError, match="No VGG16 weights file"):
        load_lpips(tmp_path / "absent.pth", heads_path)
    with pytest.raises(LPIPSWeightsNotFoundError, match="turn the LPIPS loss off"):
        load_lpips(None, heads_path, allow_download=False)
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "foreign.pth")
    with pytest.raises(ValueError, match="not a torchvision VGG16 state dict"):
        load_lpips(tmp_path / "foreign.pth", heads_path)
    with pytest.raises(ValueError, match="not an LPIPS VGG linear-head file"):
        load_lpips(tmp_path / "foreign.pth", tmp_path / "foreign.pth")


def test_unreachable_download_becomes_a_clear_error(monkeypatch, weight_files):
    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(LPIPSWeightsNotFoundError, match="Could not download"):
        load_lpips(None, weight_files[1])


def test_linear_heads_ship_in_the_lpips_wheel():
    try:
        path = lpips_linear_weights_path()
    except LPIPSWeightsNotFoundError:
        pytest.skip("neither lpips nor torchmetrics is installed")
    heads = torch.load(path, map_location="cpu", weights_only=True)
    assert [heads[f"lin{index}.model.1.weight"].shape[1] for index in range(5)] == list(LPIPS_CHANNELS)
    assert all((heads[f"lin{index}.model.1.weight"] >= 0).all() for index in range(5))  # LPIPS heads are non-negative


def test_lpips_metric_module_averages_the_distances(lpips_model, weight_files):
    vgg_path, heads_path, _, _ = weight_files
    x, y = images(0), images(1)
    result = load_metric("lpips").compute(
        predictions=x.numpy(), references=y.numpy(), vgg16_weights=str(vgg_path), linear_weights=str(heads_path)
    )
    assert result["lpips"] == pytest.approx(lpips_model(x, y).mean().item(), rel=1e-5)
