"""Image → tokens → image with a SimVQ tokenizer; the README's usage snippet as a runnable script.

    python examples/tokenize_image.py [--model DIR_OR_HUB_ID] [--image PATH] [--output reconstruction.png]

Without `--model` it builds an untrained 262,144-code tokenizer (the reconstruction is then noise, but every
step — preprocessing, the nearest-code search over 262k codes, decoding, saving — runs for real).
"""

import argparse
from pathlib import Path

import PIL.Image
import torch
from transformers import AutoImageProcessor, AutoModel

from hf_simvq import SimVQConfig, SimVQImageProcessor, SimVQModel


def default_image() -> PIL.Image.Image:
    """A photo from scikit-image when it is installed (`pip install -e ".[train]"`), else a generated gradient."""
    try:
        from skimage import data

        return PIL.Image.fromarray(data.astronaut())
    except ImportError:
        return PIL.Image.linear_gradient("L").convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="a saved SimVQ folder or Hub id; default: an untrained 262k-code model")
    parser.add_argument("--image", type=Path, help="an image file; default: scikit-image's astronaut photo")
    parser.add_argument("--output", type=Path, default=Path("reconstruction.png"))
    args = parser.parse_args()

    if args.model:
        model, processor = AutoModel.from_pretrained(args.model), AutoImageProcessor.from_pretrained(args.model)
    else:
        model = SimVQModel(SimVQConfig(codebook_size=262144))
        processor = SimVQImageProcessor.from_image_size(model.config.image_size)
    model.eval()
    image = PIL.Image.open(args.image) if args.image else default_image()

    pixel_values = processor(image, return_tensors="pt").pixel_values
    with torch.no_grad():
        tokens = model.encode(pixel_values).image_tokens
        reconstruction = model.decode_tokens(tokens)
    processor.postprocess(reconstruction)[0].save(args.output)
    print(
        f"{tuple(pixel_values.shape)} image → {tuple(tokens.shape)} tokens in [0, {model.config.codebook_size}) "
        f"(first row: {tokens[0, 0, :8].tolist()} …) → {args.output}"
    )


if __name__ == "__main__":
    main()
