"""Model cards for trained SimVQ tokenizers, rendered from `model_cards/template.md` with huggingface_hub.

The template ships inside the package (`hf_simvq/templates/model_card.md`, a link to the repository's
`model_cards/template.md` that the wheel stores as a file), so a plain `pip install` can build cards too.

The evaluation results go into the card's `model-index` metadata (as `EvalResult`s), so the Hub shows them and
`ModelCard.load(...).data.eval_results` reads them back.
"""

from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedModel

DEFAULT_TEMPLATE_PATH = Path(__file__).parent / "templates" / "model_card.md"
# result key → (metric type, display name, format); only results that were measured go into the card.
CARD_METRICS = {
    "utilization": ("codebook_utilization", "Codebook utilization", "{:.2%}"),
    "perplexity": ("perplexity", "Codebook perplexity", "{:.1f}"),
    "psnr": ("psnr", "PSNR (dB)", "{:.2f}"),
    "ssim": ("ssim", "SSIM", "{:.4f}"),
    "rfid": ("rfid", "rFID", "{:.2f}"),
    "lpips": ("lpips", "LPIPS", "{:.4f}"),
    "mel_distance": ("mel_distance", "Log-mel L1 distance", "{:.4f}"),
    "pesq": ("pesq", "PESQ (wide-band, 16 kHz)", "{:.3f}"),
    "stoi": ("stoi", "STOI", "{:.4f}"),
    "vuv_f1": ("vuv_f1", "V/UV F1", "{:.4f}"),
}
# modality → (task type, task name, tag), from the model's `input_modalities`.
MODALITY_TASKS = {
    "image": ("image-to-image", "Image reconstruction", "image-tokenizer"),
    "audio": ("audio-to-audio", "Speech reconstruction", "audio-tokenizer"),
}
SECRET_ARGUMENT_MARKERS = ("token", "password", "secret")


def build_model_card(
    model: PreTrainedModel,
    eval_results: dict[str, float],
    dataset_name: str,
    training_args: dict[str, Any] | None = None,
    reconstruction_grid: str | None = None,
    model_name: str | None = None,
    repo_id: str | None = None,
    dataset_split: str = "validation",
    template_path: str | Path = DEFAULT_TEMPLATE_PATH,
    reported_by: tuple[str, str] | None = None,
    source_checkpoint: str | None = None,
) -> ModelCard:
    """A `ModelCard` for `model` with `model-index` eval results, data, recipe, codebook size, usage and grid.

    Args:
        model: the trained `SimVQModel` or `SimVQAudioModel`; its config gives quantizer, codebook size and image size
            or sampling rate, its `input_modalities` the kind of card.
        eval_results: the dict of `evaluate_tokenizer`; metrics absent from it (e.g. rFID without weights) are left
            out of the card rather than reported as zero.
        dataset_name: the Hub dataset id, or a description of the data (e.g. the embedded default data).
        training_args: the training arguments, listed as the recipe (arguments naming tokens or secrets are omitted).
        reconstruction_grid: path of the reconstruction grid image, relative to the card.
        model_name: title and `model-index` name; defaults to the last part of `repo_id`, or a descriptive name.
        repo_id: Hub id used in the usage snippet; defaults to `model_name`.
        template_path: a Jinja template with a `{{ card_data }}` front matter block.
        reported_by: `(name, url)` of the publication the results are quoted from, for weights converted rather
            than trained here; the card then presents them as reported, not measured, and `model-index` names the
            source.
        source_checkpoint: the original file the weights were converted from, named in the card.
    """
    template_path = Path(template_path)
    if not template_path.is_file():
        raise FileNotFoundError(
            f"Model card template not found at {template_path}; pass template_path (the package ships "
            "hf_simvq/templates/model_card.md, the repository model_cards/template.md)."
        )
    config = model.config
    modality = model.input_modalities[0]
    task_type, task_name, modality_tag = MODALITY_TASKS[modality]
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else f"simvq-{config.codebook_size}")
    measured = {key: float(eval_results[key]) for key in CARD_METRICS if eval_results.get(key) is not None}
    is_hub_dataset = not any(character.isspace() for character in dataset_name)
    results = [
        EvalResult(
            task_type=task_type,
            task_name=task_name,
            dataset_type=dataset_name if is_hub_dataset else "custom",
            dataset_name=dataset_name,
            dataset_split=dataset_split,
            metric_type=CARD_METRICS[key][0],
            metric_name=CARD_METRICS[key][1],
            metric_value=value,
            source_name=reported_by[0] if reported_by else None,
            source_url=reported_by[1] if reported_by else None,
        )
        for key, value in measured.items()
    ]
    card_data = ModelCardData(
        model_name=model_name,
        eval_results=results or None,
        license="mit",
        library_name="transformers",
        tags=["simvq", modality_tag, "vector-quantization", config.quantizer_type],
        datasets=[dataset_name] if is_hub_dataset else None,
    )
    recipe = sorted(
        (name, value)
        for name, value in (training_args or {}).items()
        if value is not None and not any(marker in name.lower() for marker in SECRET_ARGUMENT_MARKERS)
    )
    return ModelCard.from_template(
        card_data,
        template_path=str(template_path),
        model_name=model_name,
        repo_id=repo_id or model_name,
        quantizer_type=config.quantizer_type,
        codebook_size=config.codebook_size,
        embed_dim=config.embed_dim,
        modality=modality,
        image_size=getattr(config, "image_size", None),
        latent_size=getattr(config, "latent_size", None),
        sampling_rate=getattr(config, "sampling_rate", None),
        hop_length=getattr(config, "hop_length", None),
        frame_rate=config.sampling_rate // config.hop_length if modality == "audio" else None,
        dataset_name=dataset_name,
        dataset_split=dataset_split,
        num_images=eval_results.get("num_images", eval_results.get("num_clips")),
        num_tokens=eval_results.get("num_tokens"),
        metrics_table=[(CARD_METRICS[key][1], CARD_METRICS[key][2].format(value)) for key, value in measured.items()],
        reconstruction_grid=reconstruction_grid,
        training_args=recipe,
        reported_by=reported_by,
        source_checkpoint=source_checkpoint,
    )


__all__ = ["DEFAULT_TEMPLATE_PATH", "build_model_card"]
