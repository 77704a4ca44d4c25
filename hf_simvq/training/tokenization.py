"""Turning an image dataset into token arrays for a language model: `datasets.map` over the frozen tokenizer.

The work is split into contiguous chunks of the dataset, each mapped into its own Arrow cache file named by a
fingerprint of the data, the model's weights and the settings; a run that is interrupted and started again reuses
every finished chunk (datasets loads a cache file instead of recomputing it). Under `torchrun`/`accelerate launch`
each process takes every `world_size`-th chunk; the main process then joins them in dataset order and saves the
result with `save_to_disk`, which an LM trainer reads back with `datasets.load_from_disk`.
"""

import hashlib
from pathlib import Path

import datasets
import torch
from accelerate import PartialState

from ..models.simvq.image_processing_simvq import SimVQImageProcessor

TOKENS_COLUMN = "image_tokens"


def weights_fingerprint(model: torch.nn.Module) -> str:
    """SHA-256 of the model's parameters and buffers: a cache written by other weights is never reused."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def tokenize_images(
    dataset: datasets.Dataset,
    model,
    output_dir: str | Path,
    image_column: str = "image",
    batch_size: int = 64,
    chunk_size: int = 4096,
    image_processor: SimVQImageProcessor | None = None,
    state: PartialState | None = None,
) -> datasets.Dataset | None:
    """Token ids of every image of `dataset`, saved under `output_dir/tokens` (returned on the main process).

    Each example keeps its other columns and gains `image_tokens`: the token map flattened row-major, `int32` (a
    `(latent_size, latent_size)` map; multi-scale: VAR's concatenated scales). `image_column` is dropped.

    Args:
        dataset: a map-style `datasets.Dataset` with a PIL image column.
        model: a `SimVQModel`; put in eval mode here, so the quantizer uses its cached-codebook search.
        output_dir: where the chunk caches (`chunks/`) and the saved dataset (`tokens/`) go.
        chunk_size: images per resumable unit (one cache file each).
        image_processor: defaults to `SimVQImageProcessor.from_image_size(model.config.image_size)`.
        state: accelerate's process state; one is made when not given.
    """
    if not isinstance(dataset, datasets.Dataset):
        raise ValueError(
            f"tokenize_images needs a map-style datasets.Dataset (got {type(dataset).__name__}): load the data "
            "without streaming=True, so the work can be chunked, cached and resumed."
        )
    if image_column not in dataset.column_names:
        raise ValueError(
            f"No column {image_column!r} in the dataset (columns: {dataset.column_names}); pass image_column."
        )
    if batch_size < 1 or chunk_size < 1:
        raise ValueError(f"batch_size and chunk_size must be positive, got {batch_size} and {chunk_size}.")
    state = state or PartialState()
    image_processor = image_processor or SimVQImageProcessor.from_image_size(model.config.image_size)
    model = model.eval().to(state.device)
    output_dir = Path(output_dir)
    chunk_dir = output_dir / "chunks"
    chunk_dir.mkdir(parents=True, exist_ok=True)

    def encode(batch: dict[str, list]) -> dict[str, torch.Tensor]:
        pixel_values = image_processor(batch[image_column], return_tensors="pt")["pixel_values"].to(state.device)
        with torch.inference_mode():
            tokens = model.encode(pixel_values).image_tokens
        return {TOKENS_COLUMN: tokens.flatten(1).to(torch.int32).cpu()}

    run_key = hashlib.sha256(
        f"{dataset._fingerprint}|{weights_fingerprint(model)}|{image_processor.to_json_string()}|{chunk_size}".encode()
    ).hexdigest()[:16]
    starts = range(0, len(dataset), chunk_size)
    chunk_files = [chunk_dir / f"tokens-{run_key}-{index:05d}.arrow" for index in range(len(starts))]
    for index in range(state.process_index, len(starts), state.num_processes):
        chunk = dataset.select(range(starts[index], min(starts[index] + chunk_size, len(dataset))))
        chunk.map(
            encode,
            batched=True,
            batch_size=batch_size,
            remove_columns=[image_column],
            cache_file_name=str(chunk_files[index]),
            load_from_cache_file=True,
            desc=f"Tokenizing chunk {index + 1}/{len(starts)} (process {state.process_index})",
        )
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    tokens = datasets.concatenate_datasets([datasets.Dataset.from_file(str(path)) for path in chunk_files])
    tokens.save_to_disk(str(output_dir / "tokens"))
    return tokens


__all__ = ["TOKENS_COLUMN", "tokenize_images", "weights_fingerprint"]
