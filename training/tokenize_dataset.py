"""Tokenize an image dataset with a saved SimVQ tokenizer, for LM training: token arrays saved with `save_to_disk`.

    python training/tokenize_dataset.py --model_name_or_path DIR --output_dir tokens_out
    torchrun --nproc_per_node 2 training/tokenize_dataset.py --model_name_or_path DIR --output_dir tokens_out

Without --dataset_name or --train_data_dir it tokenizes the embedded default data. Run it again after an
interruption: finished chunks are reused from `output_dir/chunks`. Read the result with
`datasets.load_from_disk(output_dir + "/tokens")`; column `image_tokens` holds each image's ids, flattened row-major.
"""

import argparse

from accelerate import PartialState
from transformers import AutoModel

import hf_simvq  # noqa: F401  (registers SimVQ with the Auto classes)
from hf_simvq.training.data import load_image_split
from hf_simvq.training.options import add_data_arguments, data_source
from hf_simvq.training.tokenization import tokenize_images


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_name_or_path", required=True, help="Saved model folder or Hub id.")
    parser.add_argument("--output_dir", required=True)
    add_data_arguments(parser)
    parser.add_argument("--split", default="train")
    parser.add_argument("--num_default_images", type=int, default=2048, help="Crops per split of the default data.")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--chunk_size", type=int, default=4096, help="Images per resumable cache file.")
    parser.add_argument(
        "--brute_force",
        action="store_true",
        help="Tiled brute-force search: same ids, faster for an untrained encoder.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    state = PartialState()
    model = AutoModel.from_pretrained(args.model_name_or_path)
    model.quantize.subspace_search = not args.brute_force
    dataset = load_image_split(args.split, model.config.image_size, args.num_default_images, **data_source(args))
    tokens = tokenize_images(
        dataset, model, args.output_dir, args.image_column, args.batch_size, args.chunk_size, state=state
    )
    if tokens is not None:
        print(f"{len(tokens)} images → {args.output_dir}/tokens ({tokens.features})")


if __name__ == "__main__":
    main()
