import numpy as np
import PIL.Image
import pytest
import torch

from hf_simvq import SimVQImageProcessor


@pytest.fixture
def processor() -> SimVQImageProcessor:
    return SimVQImageProcessor.from_image_size(32)


@pytest.fixture
def photo() -> np.ndarray:
    """A 40×60 RGB gradient: resizing the short edge to 32 and center-cropping keeps its middle."""
    rows = np.linspace(0, 255, 40)[:, None].repeat(60, axis=1)
    cols = np.linspace(0, 255, 60)[None, :].repeat(40, axis=0)
    return np.stack([rows, cols, 255 - rows], axis=-1).round().astype(np.uint8)


def pixels(processor, image) -> torch.Tensor:
    return processor(image, return_tensors="pt")["pixel_values"]


def test_rgb_photo_becomes_square_values_in_minus_one_to_one(processor, photo):
    values = pixels(processor, PIL.Image.fromarray(photo))
    assert values.shape == (1, 3, 32, 32) and values.dtype == torch.float32
    assert values.min() >= -1 and values.max() <= 1
    expected = PIL.Image.fromarray(photo).resize((48, 32), PIL.Image.BICUBIC).crop((8, 0, 40, 32))
    expected = torch.from_numpy(np.array(expected)).permute(2, 0, 1).float() / 127.5 - 1
    torch.testing.assert_close(values[0], expected, atol=1 / 127.5 + 1e-6, rtol=0)


def test_every_image_mode_gives_rgb(processor, photo):
    rgb = PIL.Image.fromarray(photo)
    opaque_rgba = rgb.convert("RGBA")
    transparent = opaque_rgba.copy()
    transparent.putalpha(0)
    grey = rgb.convert("L")
    sixteen_bit = PIL.Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)
    assert sixteen_bit.mode == "I;16"

    reference = pixels(processor, rgb)
    torch.testing.assert_close(pixels(processor, opaque_rgba), reference)
    assert torch.all(pixels(processor, transparent) == 1.0)  # transparency composites onto white
    palette = rgb.convert("P")
    torch.testing.assert_close(pixels(processor, palette), pixels(processor, palette.convert("RGB")))
    grey_values = pixels(processor, grey)
    assert grey_values.shape == (1, 3, 32, 32) and torch.equal(grey_values[:, 0], grey_values[:, 2])
    torch.testing.assert_close(pixels(processor, sixteen_bit), grey_values)  # scaled, not saturated to white


def test_arrays_and_tensors_in_every_layout(processor, photo):
    reference = pixels(processor, PIL.Image.fromarray(photo))
    torch.testing.assert_close(pixels(processor, photo), reference)
    torch.testing.assert_close(pixels(processor, photo.transpose(2, 0, 1).copy()), reference)
    torch.testing.assert_close(pixels(processor, torch.from_numpy(photo).permute(2, 0, 1)), reference)
    torch.testing.assert_close(pixels(processor, photo.astype(np.float32) / 255), reference)
    torch.testing.assert_close(pixels(processor, photo.astype(np.uint16) * 257), reference)
    batch = pixels(processor, np.stack([photo, photo[::-1].copy()]))
    assert batch.shape == (2, 3, 32, 32)
    torch.testing.assert_close(batch[0], reference[0])


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([], "No images"),
        (np.zeros(5, dtype=np.uint8), "Cannot read images"),
        (np.zeros((2, 3, 4, 5, 6), dtype=np.uint8), "Cannot read images"),
        (np.zeros((10, 10, 7), dtype=np.uint8), "1, 3 or 4 channels"),
        (np.full((10, 10, 3), 2.0, dtype=np.float32), r"\[0, 1\]"),
        (12345, "Cannot read images"),
        ({"image": 1}, "Cannot read images"),
    ],
)
def test_bad_input_raises_a_clear_value_error(processor, bad, message):
    with pytest.raises(ValueError, match=message):
        processor(bad)


def test_postprocess_inverts_the_scaling(processor, photo):
    crop = np.ascontiguousarray(photo[:32, :32])
    values = pixels(processor, crop)
    images = processor.postprocess(values)
    assert len(images) == 1 and images[0].mode == "RGB" and images[0].size == (32, 32)
    np.testing.assert_array_equal(np.asarray(images[0]), crop)
    assert processor.postprocess(torch.zeros(1, 32, 32))[0].mode == "L"
    with pytest.raises(ValueError, match="batch, 1 or 3"):
        processor.postprocess(torch.zeros(1, 5, 32, 32))


def test_save_and_reload(processor, tmp_path, photo):
    processor.save_pretrained(tmp_path)
    reloaded = SimVQImageProcessor.from_pretrained(tmp_path)
    torch.testing.assert_close(pixels(reloaded, photo), pixels(processor, photo))
