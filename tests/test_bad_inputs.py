"""Inputs that would otherwise encode or decode without a word are refused, by the model and the door alike."""

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from hf_simvq import SimVQDiffusersModel, SimVQImageProcessor, SimVQModel

CONFIG = tiny_config()


def photo_like() -> torch.Tensor:
    """A smooth 16×16 image in [-1, 1] with sharp edges, the kind resampling overshoots on."""
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(2, 3, 16, 16, generator=generator) > 0.5).float() * 2 - 1


def with_nan(images: torch.Tensor) -> torch.Tensor:
    images = images.clone()
    images[0, 1, 3, 4] = float("nan")
    return images


def imagenet_normalised(images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    return ((images + 1) / 2 - mean[:, None, None]) / std[:, None, None]


@pytest.fixture(params=["SimVQModel.encode", "SimVQModel", "SimVQDiffusersModel.encode", "SimVQDiffusersModel"])
def encode(request):
    """Every entry point that takes pixel values."""
    torch.manual_seed(0)
    model = SimVQModel(CONFIG).eval()
    door = SimVQDiffusersModel.from_transformers(model)
    return {
        "SimVQModel.encode": model.encode,
        "SimVQModel": model,
        "SimVQDiffusersModel.encode": door.encode,
        "SimVQDiffusersModel": door,
    }[request.param]


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (with_nan, "1 NaN or infinite values"),
        (lambda images: images.clone().index_fill_(2, torch.tensor([5]), float("inf")), "NaN or infinite"),
        (lambda images: (images + 1) * 127.5, r"must lie in \[-1, 1\].*SimVQImageProcessor"),
        # ImageNet's mean/std instead of the processor's [-1, 1]: from (0 - 0.485) / 0.229 to (1 - 0.406) / 0.225.
        (imagenet_normalised, r"got \[-2\.1\d*, 2\.6\d*\].*SimVQImageProcessor"),
        (lambda images: -images.abs() - 1.5, r"must lie in \[-1, 1\]"),
        (lambda images: ((images + 1) * 127.5).to(torch.uint8), r"floating-point.*torch.uint8.*SimVQImageProcessor"),
        (lambda images: images.round().to(torch.int64), "floating-point.*torch.int64"),
        (lambda images: images > 0, "floating-point.*torch.bool"),
    ],
    ids=["nan", "inf", "0-255", "imagenet-normalised", "below", "uint8", "int64", "bool"],
)
def test_bad_pixel_values_raise_a_value_error_naming_the_fix(encode, images, corrupt, message):
    with pytest.raises(ValueError, match=message):
        encode(corrupt(images))


def test_the_existing_shape_errors_come_first(encode):
    with pytest.raises(ValueError, match="multiples"):
        encode(torch.zeros(1, 3, 30, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match="shape"):
        encode(torch.full((1, 1, 32, 32), float("nan")))


def test_what_the_processor_and_resampling_give_is_accepted(encode):
    processor_output = SimVQImageProcessor.from_image_size(32)(
        [torch.zeros(32, 32, 3, dtype=torch.uint8), torch.full((32, 32, 3), 255, dtype=torch.uint8)],
        return_tensors="pt",
    ).pixel_values
    assert processor_output.min() == -1 and processor_output.max() == 1
    # Bicubic upsampling of a sharp-edged image overshoots [-1, 1]; it is still a valid image.
    resampled = F.interpolate(photo_like(), size=(32, 32), mode="bicubic", align_corners=False)
    assert resampled.abs().max() > 1.2
    for pixel_values in (processor_output, resampled):
        with torch.no_grad():
            encode(pixel_values)


def test_an_empty_batch_passes_the_checks(encode):
    with torch.no_grad():
        encode(torch.zeros(0, 3, 32, 32))


@pytest.fixture
def door() -> SimVQDiffusersModel:
    torch.manual_seed(0)
    return SimVQDiffusersModel.from_transformers(SimVQModel(CONFIG)).eval()


@pytest.mark.parametrize("force_not_quantize", [False, True])
def test_the_door_refuses_non_finite_latents_instead_of_snapping_them_to_code_0(door, force_not_quantize):
    latents = torch.zeros(1, CONFIG.embed_dim, 8, 8)
    latents[0, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match="NaN or infinite.*scaling_factor"):
        door.decode(latents, force_not_quantize=force_not_quantize)
    with pytest.raises(ValueError, match="NaN or infinite"):
        door.decode(latents.fill_(float("inf")), force_not_quantize=force_not_quantize)


@pytest.mark.parametrize("force_not_quantize", [False, True])
def test_the_door_names_the_latent_shape_it_decodes(door, force_not_quantize):
    with pytest.raises(ValueError, match=f"latents of shape \\(batch, {CONFIG.embed_dim}, height, width\\)"):
        door.decode(torch.zeros(1, CONFIG.embed_dim + 1, 8, 8), force_not_quantize=force_not_quantize)
    with pytest.raises(ValueError, match="get_codebook_entry"):
        door.decode(torch.zeros(1, 8, 8, dtype=torch.long), force_not_quantize=force_not_quantize)


def test_the_door_refuses_token_ids_outside_the_codebook(door):
    shape = (1, 8, 8, CONFIG.embed_dim)
    with pytest.raises(ValueError, match="outside the codebook"):
        door.quantize.get_codebook_entry(torch.full((1, 64), CONFIG.codebook_size), shape)
