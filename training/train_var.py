"""Demo: a tiny class-conditional VAR (next-scale prediction, Tian et al. 2024) on a multi-scale SimVQ tokenizer.

The tokenizer is frozen; the transformer learns to predict every scale's token map from the class and the coarser
scales, trained with teacher forcing from `quantize.idxBl_to_var_input` under a block-causal mask (a token sees its
own and coarser scales, never finer ones). Classes are the source photos of the embedded default data. It reads the
image tokenizer only through the names FoundationVision/VAR's own `VAR` and trainer use (`Cvae`, `vocab_size`,
`img_to_idxBl`, `quantize.idxBl_to_var_input`, `quantize.embedding`, `quantize.get_next_autoregressive_input`,
`fhat_to_img`), so what works here works with VAR's code.

    python training/train.py --quantizer_type multiscale_simvq --output_dir simvq-multiscale
    python training/train_var.py --tokenizer simvq-multiscale --output_dir var-demo

Writes `samples.png` (one row per class) and `metrics.json` (loss, per-scale loss, per-scale codebook usage of the
data and of the samples) to `--output_dir`.
"""

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from hf_simvq import SimVQModel
from hf_simvq.evaluation.codebook_statistics import codebook_usage, scale_histograms
from hf_simvq.training.data import PixelValuesTransform, default_image_datasets
from hf_simvq.training.process_group import run_then_end_training

logger = get_logger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True, help="Folder of a saved multiscale_simvq SimVQModel.")
    parser.add_argument("--output_dir", default="var-demo")
    parser.add_argument("--num_train_images", type=int, default=2048, help="Crops of the embedded default data.")
    parser.add_argument("--hidden_size", type=int, default=64)
    parser.add_argument("--num_layers", type=int, default=2)
    parser.add_argument("--num_heads", type=int, default=4)
    parser.add_argument("--train_batch_size", type=int, default=32)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--max_train_steps", type=int, default=400)
    parser.add_argument("--logging_steps", type=int, default=50)
    parser.add_argument("--samples_per_class", type=int, default=4)
    parser.add_argument("--top_k", type=int, default=50, help="Sample among the k most likely codes (0: all).")
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("num_train_images", "hidden_size", "num_layers", "num_heads", "train_batch_size", "max_train_steps"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name} must be positive, got {getattr(args, name)}.")
    if args.hidden_size % args.num_heads:
        raise ValueError(f"--hidden_size {args.hidden_size} must be divisible by --num_heads {args.num_heads}.")
    if args.temperature <= 0 or args.top_k < 0:
        raise ValueError(f"--temperature must be positive and --top_k non-negative, got {args}.")
    return args


class NextScaleTransformer(nn.Module):
    """VAR's generator in miniature: a class start token, then every scale's tokens, predicted scale by scale.

    Position `0` holds the class embedding and predicts the first (1×1) scale; the block of scale `i + 1` is fed
    `f_hat` after scales `0 … i` downsampled to that scale (`idxBl_to_var_input`) and predicts scale `i + 1`.
    """

    def __init__(self, scales: list[int], codebook_size: int, embed_dim: int, num_classes: int, args):
        super().__init__()
        if scales[0] != 1:
            raise ValueError(f"The class token predicts the first scale, which must be 1×1; got scales {scales}.")
        self.scales = scales
        levels = torch.cat([torch.full((side * side,), level) for level, side in enumerate(scales)])
        self.register_buffer("levels", levels, persistent=False)
        # True = may not attend: a query never sees a key of a finer scale than its own.
        self.register_buffer("attention_mask", levels[:, None] < levels[None, :], persistent=False)
        self.class_embedding = nn.Embedding(num_classes, args.hidden_size)
        self.input_projection = nn.Linear(embed_dim, args.hidden_size)
        self.position_embedding = nn.Parameter(torch.randn(len(levels), args.hidden_size) * 0.02)
        self.level_embedding = nn.Embedding(len(scales), args.hidden_size)
        layer = nn.TransformerEncoderLayer(
            args.hidden_size, args.num_heads, 4 * args.hidden_size, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, args.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(args.hidden_size)
        self.head = nn.Linear(args.hidden_size, codebook_size)

    def forward(self, class_labels: torch.LongTensor, var_input: torch.FloatTensor) -> torch.FloatTensor:
        """Logits `(B, length, K)` for the first `length = 1 + var_input.shape[1]` tokens (a prefix of scales)."""
        hidden = torch.cat([self.class_embedding(class_labels)[:, None], self.input_projection(var_input)], dim=1)
        length = hidden.shape[1]
        hidden = hidden + self.position_embedding[:length] + self.level_embedding(self.levels[:length])
        hidden = self.blocks(hidden, mask=self.attention_mask[:length, :length])
        return self.head(self.norm(hidden))

    @torch.no_grad()
    def generate(
        self, image_tokenizer: SimVQModel, class_labels: torch.LongTensor, top_k: int, temperature: float, generator
    ) -> tuple[list[torch.LongTensor], torch.FloatTensor]:
        """Sample every scale's ids, coarse to fine, as VAR's `autoregressive_infer_cfg`: codes from
        `quantize.embedding`, `f_hat` grown by `quantize.get_next_autoregressive_input`, images from `fhat_to_img`.

        Returns the ids by scale and the images in `[-1, 1]`. The whole prefix is recomputed at each scale (no
        key/value cache): at this size that costs less than it would take to explain.
        """
        quantize = image_tokenizer.quantize
        batch, embed_dim, num_scales = class_labels.shape[0], image_tokenizer.Cvae, len(self.scales)
        latent = self.scales[-1]
        f_hat = torch.zeros(batch, embed_dim, latent, latent, device=class_labels.device)
        var_input = f_hat.new_zeros(batch, 0, embed_dim)
        scale_indices = []
        for si, side in enumerate(self.scales):
            logits = self(class_labels, var_input)[:, -side * side :] / temperature
            if top_k:
                threshold = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
                logits = logits.masked_fill(logits < threshold, float("-inf"))
            probabilities = logits.softmax(dim=-1).flatten(0, 1)
            ids = torch.multinomial(probabilities, 1, generator=generator).view(batch, side * side)
            scale_indices.append(ids)
            codes = quantize.embedding(ids).transpose(1, 2).reshape(batch, embed_dim, side, side)
            f_hat, next_input = quantize.get_next_autoregressive_input(si, num_scales, f_hat, codes)
            if si < num_scales - 1:
                var_input = torch.cat([var_input, next_input.flatten(2).transpose(1, 2)], dim=1)
        return scale_indices, image_tokenizer.fhat_to_img(f_hat)


def photo_labels(sources: list[str] | None, num_images: int) -> tuple[torch.LongTensor, list[str]]:
    """Class of every crop: its source photo (`"astronaut@0.5"` → `astronaut`), or one class without sources."""
    if sources is None:
        return torch.zeros(num_images, dtype=torch.long), ["all"]
    photos = [source.split("@")[0] for source in sources]
    names = sorted(set(photos))
    return torch.tensor([names.index(photo) for photo in photos]), names


@torch.no_grad()
def tokenize(image_tokenizer: SimVQModel, dataset, batch_size: int = 256) -> torch.LongTensor:
    """All images of `dataset` → concatenated multi-scale ids `(N, L)`, once: the image tokenizer is frozen."""
    transform = PixelValuesTransform(image_tokenizer.config.image_size)
    tokens = []
    for start in range(0, len(dataset), batch_size):
        pixel_values = transform(dataset[start : start + batch_size])["pixel_values"]
        tokens.append(torch.cat(image_tokenizer.img_to_idxBl(pixel_values.to(image_tokenizer.device)), dim=1).cpu())
    return torch.cat(tokens)


def per_scale_usage(image_tokenizer: SimVQModel, tokens: torch.LongTensor) -> list[dict[str, float]]:
    """Codebook usage statistics of every scale, coarse to fine."""
    histograms = scale_histograms(image_tokenizer.quantize, tokens)
    return [
        {"scale": side, **codebook_usage(row)}
        for side, row in zip(image_tokenizer.config.scales, histograms, strict=True)
    ]


def save_image_grid(images: torch.Tensor, num_columns: int, path: Path) -> None:
    """Images in `[-1, 1]` `(N, 3, H, W)` → one PNG, `num_columns` per row."""
    pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    rows = [np.concatenate(pixels[start : start + num_columns], axis=1) for start in range(0, len(pixels), num_columns)]
    PIL.Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    accelerator = Accelerator()
    logging.basicConfig(format="%(asctime)s - %(levelname)s - %(message)s", level=logging.INFO)
    run_then_end_training(accelerator, train, args)


def train(args: argparse.Namespace, accelerator: Accelerator) -> None:
    """Tokenize the data once, train the next-scale transformer, sample every class and write the results."""
    set_seed(args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    image_tokenizer = SimVQModel.from_pretrained(args.tokenizer).to(accelerator.device).eval().requires_grad_(False)
    if image_tokenizer.config.quantizer_type != "multiscale_simvq":
        raise ValueError(
            f"--tokenizer must be a multiscale_simvq tokenizer, got quantizer_type="
            f"{image_tokenizer.config.quantizer_type!r}; train one with training/train.py --quantizer_type "
            "multiscale_simvq."
        )
    scales, codebook_size = image_tokenizer.config.scales, image_tokenizer.vocab_size

    train_images = default_image_datasets(image_tokenizer.config.image_size, num_train_images=args.num_train_images)[
        "train"
    ]
    labels, class_names = photo_labels(train_images["source"], len(train_images))
    tokens = tokenize(image_tokenizer, train_images)
    logger.info(f"Tokenized {len(tokens)} images into {tokens.shape[1]} tokens each over scales {scales}.")

    transformer = NextScaleTransformer(scales, codebook_size, image_tokenizer.Cvae, len(class_names), args)
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=args.learning_rate, weight_decay=0.01)
    dataloader = DataLoader(TensorDataset(tokens, labels), batch_size=args.train_batch_size, shuffle=True)
    transformer, optimizer, dataloader = accelerator.prepare(transformer, optimizer, dataloader)

    scale_sizes = [side * side for side in scales]
    step, window_scale_losses = 0, []  # per-scale losses of the steps since the last log
    while step < args.max_train_steps:
        for batch_tokens, batch_labels in dataloader:
            with torch.no_grad():
                var_input = image_tokenizer.quantize.idxBl_to_var_input(list(batch_tokens.split(scale_sizes, dim=1)))
            logits = transformer(batch_labels, var_input)
            token_losses = F.cross_entropy(logits.flatten(0, 1), batch_tokens.flatten(), reduction="none")
            loss = token_losses.mean()
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            per_scale = token_losses.detach().view(batch_tokens.shape).split(scale_sizes, dim=1)
            window_scale_losses.append(torch.stack([part.mean() for part in per_scale]).cpu())
            if step % args.logging_steps == 0 or step == args.max_train_steps:
                scale_losses = torch.stack(window_scale_losses).mean(dim=0)
                window_scale_losses = []
                window_loss = (scale_losses * torch.tensor(scale_sizes)).sum().item() / sum(scale_sizes)
                per_scale_text = ", ".join(
                    f"{side}²: {value:.2f}" for side, value in zip(scales, scale_losses.tolist(), strict=True)
                )
                logger.info(f"step {step}: loss {window_loss:.3f} ({per_scale_text})")
            if step == args.max_train_steps:
                break

    generator = torch.Generator(device=accelerator.device).manual_seed(args.seed)
    class_labels = torch.arange(len(class_names), device=accelerator.device).repeat_interleave(args.samples_per_class)
    transformer = accelerator.unwrap_model(transformer).eval()
    samples, images = transformer.generate(image_tokenizer, class_labels, args.top_k, args.temperature, generator)
    metrics = {
        # Averaged over the last logging window (all tokens, and per scale).
        "final_loss": window_loss,
        "per_scale_loss": dict(zip(map(str, scales), scale_losses.tolist(), strict=True)),
        "uniform_loss": float(np.log(codebook_size)),
        "classes": class_names,
        "data_per_scale_usage": per_scale_usage(image_tokenizer, tokens),
        "sample_per_scale_usage": per_scale_usage(image_tokenizer, torch.cat(samples, dim=1).cpu()),
    }
    if accelerator.is_main_process:
        save_image_grid(images, args.samples_per_class, output_dir / "samples.png")
        (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        for name, usages in (("data", metrics["data_per_scale_usage"]), ("samples", metrics["sample_per_scale_usage"])):
            used = ", ".join(f"{u['scale']}²: {u['used_codes']}" for u in usages)
            logger.info(f"codes used per scale ({name}): {used}")
        logger.info(f"final loss {metrics['final_loss']:.3f} (uniform: {metrics['uniform_loss']:.3f}); {output_dir}")


if __name__ == "__main__":
    main()
