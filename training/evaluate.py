"""Evaluate a saved SimVQ tokenizer on a dataset: codebook utilization and perplexity, PSNR, SSIM, rFID, LPIPS.

    python training/evaluate.py --model_name_or_path DIR --split validation --output_file eval_results.json
    torchrun --nproc_per_node 2 training/evaluate.py --model_name_or_path DIR   # same numbers, half the time each

Without --dataset_name or --train_data_dir it uses the embedded default data (the validation crops of photos that
training never sees). Note: run as a script, this file's folder comes first on sys.path, where its name would
shadow the `evaluate` library; nothing here imports that library.
"""

import argparse
import json
from pathlib import Path

from accelerate import Accelerator
from data import default_image_datasets, load_image_dataset, with_pixel_values
from torch.utils.data import DataLoader
from transformers import AutoModel

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.evaluation import DEFAULT_METRICS, evaluate_tokenizer
from hf_simvq.lpips import load_lpips


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", required=True, help="Saved model folder or Hub id.")
    parser.add_argument("--dataset_name", help="Hub dataset id or local dataset path.")
    parser.add_argument("--dataset_config_name")
    parser.add_argument("--train_data_dir", help="Folder of images (loaded with the imagefolder builder).")
    parser.add_argument("--image_column", default="image")
    parser.add_argument("--streaming", action="store_true")
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
    if args.dataset_name is None and args.train_data_dir is None:
        splits = default_image_datasets(resolution, args.num_default_images, args.num_default_images)
        dataset = splits[args.split]
    else:
        dataset = load_image_dataset(
            dataset_name=args.dataset_name,
            dataset_config_name=args.dataset_config_name,
            train_data_dir=args.train_data_dir,
            image_column=args.image_column,
            streaming=args.streaming,
            split=args.split,
            resolution=resolution,
        )
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
