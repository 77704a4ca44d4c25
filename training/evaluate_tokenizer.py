"""Evaluate a saved SimVQ tokenizer on a dataset: codebook utilization and perplexity, PSNR, SSIM, rFID, LPIPS.

    python training/evaluate_tokenizer.py --model_name_or_path DIR --split validation --output_file eval_results.json
    torchrun --nproc_per_node 2 training/evaluate_tokenizer.py --model_name_or_path DIR   # same numbers, faster

Without --dataset_name or --train_data_dir it uses the embedded default data: the validation crops of photos that
training never sees, or with `--split test` crops of a third set of photos (greyscale scenes and textures, a portrait)
that no run, not even its validation, sees.
"""

import argparse
import json
from pathlib import Path

from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import AutoModel

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.evaluation import DEFAULT_METRICS, evaluate_tokenizer
from hf_simvq.evaluation.lpips_network import load_lpips
from hf_simvq.training.data import load_image_split, with_pixel_values
from hf_simvq.training.options import add_data_arguments, data_source


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", required=True, help="Saved model folder or Hub id.")
    add_data_arguments(parser)
    parser.add_argument("--split", default="validation")
    parser.add_argument("--resolution", type=int, help="Evaluation image size; defaults to the model's image_size.")
    parser.add_argument("--num_default_images", type=int, default=2048, help="Crops per split of the default data.")
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS), choices=DEFAULT_METRICS)
    parser.add_argument("--vgg16_weights", help="Local VGG16 weights for LPIPS (torchvision's vgg16-397923af.pth).")
    parser.add_argument("--output_file", default="eval_results.json")
    return parser.parse_args(argv)


def format_table(results: dict[str, float]) -> str:
    """The results as a two-column text table."""
    width = max(len(name) for name in results)
    rows = [
        f"{name:<{width}}  {value:.4f}" if isinstance(value, float) else f"{name:<{width}}  {value}"
        for name, value in results.items()
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    accelerator = Accelerator()
    model = AutoModel.from_pretrained(args.model_name_or_path)
    resolution = args.resolution or model.config.image_size
    dataset = load_image_split(args.split, resolution, args.num_default_images, **data_source(args))
    dataloader = DataLoader(with_pixel_values(dataset, resolution, args.image_column), batch_size=args.batch_size)
    model, dataloader = accelerator.prepare(model, dataloader)
    lpips_model = load_lpips(args.vgg16_weights) if "lpips" in args.metrics and args.vgg16_weights else None
    results = evaluate_tokenizer(model, dataloader, accelerator, metrics=args.metrics, lpips_model=lpips_model)
    if accelerator.is_main_process:
        print(format_table(results))
        Path(args.output_file).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
