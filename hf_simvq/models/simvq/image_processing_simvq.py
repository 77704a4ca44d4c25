"""Image processor for SimVQ: any image → square RGB `pixel_values` in [-1, 1], and back to PIL images."""

import numpy as np
import PIL.Image
import torch
from transformers.image_processing_backends import PilBackend
from transformers.image_utils import PILImageResampling

HIGH_BIT_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def _to_uint8(image):
    """Bring a PIL image, array or tensor to 8 bits per channel, the range the rest of the pipeline assumes.

    16-bit and float images are scaled rather than clipped (PIL's own `convert("RGB")` saturates an `I;16` image
    to white); floats must lie in [0, 1]. Anything else is rejected with the reason.
    """
    if isinstance(image, PIL.Image.Image):
        if image.mode not in HIGH_BIT_DEPTH_MODES:
            return image
        return PIL.Image.fromarray(_to_uint8(np.asarray(image)))
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"Cannot read an image from a {type(image).__name__}: pass PIL images, numpy arrays or torch tensors."
        )
    channel_axes_ok = image.ndim == 2 or (
        image.ndim == 3 and (image.shape[0] in (1, 3, 4) or image.shape[-1] in (1, 3, 4))
    )
    if not channel_axes_ok or min(image.shape) == 0:
        raise ValueError(
            f"An image array must be (height, width), (height, width, channels) or (channels, height, width) with "
            f"1, 3 or 4 channels, got shape {image.shape}."
        )
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        return image.astype(np.uint8) * 255
    if np.issubdtype(image.dtype, np.floating):
        if image.min() < 0 or image.max() > 1:
            raise ValueError(
                f"Float images must hold values in [0, 1], got [{image.min():.3g}, {image.max():.3g}]. "
                "Pass uint8 images in [0, 255], or scale to [0, 1]."
            )
        return np.round(image * 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        if image.min() < 0 or image.max() > 65535:
            raise ValueError(f"Integer images must hold values in [0, 65535], got [{image.min()}, {image.max()}].")
        # 16-bit: 65535 → 255 exactly; integer arrays that already fit in 8 bits are kept as they are.
        return (image // 257 if image.dtype == np.uint16 or image.max() > 255 else image).astype(np.uint8)
    raise ValueError(f"Unsupported image dtype {image.dtype}.")


class SimVQImageProcessor(PilBackend):
    """Resize the shortest edge, center-crop to the model's square size, convert to RGB and scale to [-1, 1].

    Uses the PIL backend: torchvision is not available here, and the tokenizer needs nothing it would add.
    """

    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BICUBIC
    size = {"shortest_edge": 128}
    default_to_square = False
    crop_size = {"height": 128, "width": 128}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 127.5
    # (x / 127.5 − 1) / 1: the [-1, 1] range the model is trained on.
    do_normalize = True
    image_mean = [1.0, 1.0, 1.0]
    image_std = [1.0, 1.0, 1.0]
    do_convert_rgb = True

    @classmethod
    def from_image_size(cls, image_size: int, **kwargs) -> "SimVQImageProcessor":
        """The processor for a model trained on `image_size × image_size` images."""
        return cls(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}, **kwargs)

    def _prepare_images_structure(self, images, expected_ndims: int = 3):
        if images is None or (isinstance(images, (list, tuple)) and len(images) == 0):
            raise ValueError("No images were given: pass one image or a non-empty list of images.")
        try:
            return super()._prepare_images_structure(images, expected_ndims=expected_ndims)
        except (ValueError, TypeError) as error:
            if isinstance(error, ValueError) and "Could not make a flat list" not in str(error):
                raise
            shape = getattr(images, "shape", None)
            raise ValueError(
                f"Cannot read images from a {type(images).__name__}"
                + (f" of shape {tuple(shape)}" if shape is not None else "")
                + ": pass a PIL image, an array (H, W), (H, W, C) or (C, H, W), a batch (N, ...) of those, or a "
                "list of them."
            ) from None

    def process_image(self, image, *args, **kwargs) -> np.ndarray:
        return super().process_image(_to_uint8(image), *args, **kwargs)

    def postprocess(self, pixel_values: torch.Tensor) -> list[PIL.Image.Image]:
        """Model outputs in [-1, 1], `(B, C, H, W)` or `(C, H, W)` → PIL images (RGB, or L for one channel)."""
        if pixel_values.ndim == 3:
            pixel_values = pixel_values[None]
        if pixel_values.ndim != 4 or pixel_values.shape[1] not in (1, 3):
            raise ValueError(
                f"Expected pixel values (batch, 1 or 3, height, width), got shape {tuple(pixel_values.shape)}."
            )
        images = ((pixel_values.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        images = images.permute(0, 2, 3, 1).cpu().numpy()
        return [PIL.Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image) for image in images]


__all__ = ["SimVQImageProcessor"]
