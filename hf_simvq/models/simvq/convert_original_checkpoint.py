"""Convert the SimVQ authors' PyTorch Lightning checkpoints (github.com/youngsheen/SimVQ) into Hugging Face folders.

    hf-simvq-convert --checkpoint simvq_262k.ckpt [--config config.yaml] --output_dir simvq-262k [--no-ema]

Each family of checkpoints is an `Architecture`: a table of key-renaming rules plus what can be read off tensor
shapes and the authors' YAML. The converter itself knows no layer names, so another family (the audio model) is
one more table. The weights are copied unchanged: the default `SimVQConfig` is the authors' architecture.
"""

import argparse
import logging
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from hf_simvq.model_card import build_model_card

from .configuration_simvq import SimVQConfig
from .configuration_simvq_audio import SimVQAudioConfig
from .feature_extraction_simvq_audio import SimVQAudioFeatureExtractor
from .image_processing_simvq import SimVQImageProcessor
from .modeling_simvq import SimVQModel
from .modeling_simvq_audio import SimVQAudioModel

logger = logging.getLogger(__name__)

EMA_PREFIX = "model_ema."
# Parts of a Lightning checkpoint that are not the tokenizer: the losses (discriminator, LPIPS).
IGNORED_PREFIXES = ("loss.",)
PAPER = (
    "SimVQ: Addressing Representation Collapse in Vector Quantized Models (arXiv 2411.02038)",
    "https://arxiv.org/abs/2411.02038",
)
# The paper's Table 1 (and the authors' README), ImageNet-128, 50k validation images, by codebook size; SSIM as a
# fraction.
IMAGENET128_REPORTED = {
    1024: {"rfid": 3.67, "lpips": 0.16, "psnr": 22.34, "ssim": 0.708, "utilization": 1.0},
    8192: {"rfid": 2.98, "lpips": 0.14, "psnr": 23.23, "ssim": 0.747, "utilization": 1.0},
    65536: {"rfid": 2.24, "lpips": 0.12, "psnr": 24.15, "ssim": 0.784, "utilization": 1.0},
    262144: {"rfid": 1.99, "lpips": 0.11, "psnr": 24.68, "ssim": 0.803, "utilization": 1.0},
}
MAX_LISTED = 8


@dataclass(frozen=True)
class Architecture:
    """How one family of the authors' checkpoints maps onto one of our model classes.

    Attributes:
        name: shown in messages.
        signature: original keys that identify the family; all must be present.
        rename_rules: `(pattern, replacement)` regex substitutions applied in order to every original key.
        frozen_keys: original keys of untrained tensors, which have no EMA copy (LitEma copies trainable
            parameters only).
        infer_config: original weights → config fields read off tensor shapes.
        yaml_fields: the authors' parsed YAML → `{field: (yaml path, value)}`, checked against the shapes.
        config_defaults: fields the reference code fixes rather than the shapes (e.g. 32 GroupNorm groups).
        build_processor: config → the preprocessor saved next to the weights.
        reported_results: `(config fields, results)` pairs: the paper's numbers, for a config with those fields.
        dropped_keys: patterns (full match) of original keys our model has no place for, by design: modules the
            authors build but never run, buffers our model rebuilds.
        adapt: `(our name, tensor) → tensor` for tensors whose layout differs from ours (not only their name).
        card_dataset: the dataset named in the model card; `None` writes no card (the template is the image one).
    """

    name: str
    signature: tuple[str, ...]
    rename_rules: tuple[tuple[str, str], ...]
    frozen_keys: tuple[str, ...]
    infer_config: Callable[[Mapping[str, torch.Tensor]], dict[str, Any]]
    yaml_fields: Callable[[dict], dict[str, tuple[str, Any]]]
    config_defaults: dict[str, Any]
    config_class: type = SimVQConfig
    model_class: type = SimVQModel
    build_processor: Callable[[Any], Any] = lambda config: SimVQImageProcessor.from_image_size(config.image_size)
    reported_results: tuple[tuple[dict[str, Any], dict[str, float]], ...] = ()
    dropped_keys: tuple[str, ...] = ()
    adapt: Callable[[str, torch.Tensor], torch.Tensor] = lambda name, tensor: tensor
    card_dataset: str | None = "ILSVRC/imagenet-1k"

    def rename(self, key: str) -> str:
        for pattern, replacement in self.rename_rules:
            key = re.sub(pattern, replacement, key)
        return key


def _numbered(weights: Mapping[str, torch.Tensor], pattern: str) -> list[int]:
    """The sorted integers captured by `pattern` over the keys, e.g. the levels of `encoder.down.(\\d+)....`."""
    return sorted({int(match.group(1)) for key in weights if (match := re.fullmatch(pattern, key))})


def infer_image_autoencoder(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Channels, multipliers, blocks and codebook of an `improved_model.Encoder/Decoder` checkpoint, from shapes."""
    levels = _numbered(weights, r"encoder\.down\.(\d+)\.block\.0\.conv1\.weight")
    blocks = _numbered(weights, r"encoder\.down\.0\.block\.(\d+)\.conv1\.weight")
    if not levels or levels != list(range(len(levels))) or blocks != list(range(len(blocks))):
        raise ValueError(
            f"The encoder's levels {levels} or blocks {blocks} (encoder.down.<level>.block.<block>) are not numbered "
            "0, 1, …: this is not the authors' improved_model.Encoder."
        )
    conv_in = weights["encoder.conv_in.weight"]
    base_channels = conv_in.shape[0]
    widths = [weights[f"encoder.down.{level}.block.0.conv1.weight"].shape[0] for level in levels]
    if any(width % base_channels for width in widths):
        raise ValueError(f"Stage widths {widths} are not multiples of conv_in's {base_channels} channels.")
    codebook_size, embed_dim = weights["quantize.embedding.weight"].shape
    return {
        "num_channels": conv_in.shape[1],
        "out_channels": weights["decoder.conv_out.weight"].shape[0],
        "base_channels": base_channels,
        "channel_multipliers": [width // base_channels for width in widths],
        "num_res_blocks": len(blocks),
        "embed_dim": embed_dim,
        "codebook_size": codebook_size,
    }


def infer_image_simvq(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    return {**infer_image_autoencoder(weights), "projection_bias": "quantize.embedding_proj.bias" in weights}


def image_yaml_fields(config: dict) -> dict[str, tuple[str, Any]]:
    """`{field: (yaml path, value)}` from the authors' config (LightningCLI `model.init_args`, or taming's
    `model.params`), for the fields it sets."""
    model = config.get("model") if isinstance(config, dict) else None
    section = next((name for name in ("init_args", "params") if isinstance((model or {}).get(name), dict)), None)
    arguments = model[section] if section else {}
    ddconfig, quantconfig = arguments.get("ddconfig"), arguments.get("quantconfig")
    if not isinstance(ddconfig, dict) or not isinstance(quantconfig, dict):
        raise ValueError(
            "The YAML has no model.init_args.ddconfig and model.init_args.quantconfig: pass the config.yaml that "
            "was saved next to the checkpoint (e.g. size128/config.yaml), or leave --config out."
        )
    params = quantconfig.get("params") or {}
    if params.get("e_dim") is not None and params["e_dim"] != ddconfig.get("z_channels"):
        raise ValueError(
            f"The YAML disagrees with itself: model.{section}.quantconfig.params.e_dim={params['e_dim']} but "
            f"model.{section}.ddconfig.z_channels={ddconfig.get('z_channels')}; SimVQ quantizes the encoder output "
            "directly."
        )
    target = quantconfig.get("target")
    quantizer_type = None if not target else "simvq" if target.endswith(".SimVQ") else "vq"
    ch_mult = ddconfig.get("ch_mult")
    fields = {
        "base_channels": ("ddconfig.ch", ddconfig.get("ch")),
        "channel_multipliers": ("ddconfig.ch_mult", list(ch_mult) if ch_mult is not None else None),
        "num_res_blocks": ("ddconfig.num_res_blocks", ddconfig.get("num_res_blocks")),
        "num_channels": ("ddconfig.in_channels", ddconfig.get("in_channels")),
        "out_channels": ("ddconfig.out_ch", ddconfig.get("out_ch")),
        "image_size": ("ddconfig.resolution", ddconfig.get("resolution")),
        "embed_dim": ("ddconfig.z_channels", ddconfig.get("z_channels")),
        "codebook_size": ("quantconfig.params.n_e", params.get("n_e")),
        "commitment_beta": ("quantconfig.params.beta", params.get("beta")),
        "quantizer_type": ("quantconfig.target", quantizer_type),
    }
    return {name: (f"model.{section}.{path}", value) for name, (path, value) in fields.items() if value is not None}


# improved_model.Encoder/Decoder (their names) → our autoencoder. Their decoder's `up[level]` is indexed by level
# like our `decoder.stages[level]`, so indices carry over unchanged.
IMAGE_AUTOENCODER_RULES = (
    (r"^(encoder)\.down\.(\d+)\.block\.", r"\1.stages.\2.blocks."),
    (r"^(encoder)\.down\.(\d+)\.downsample\.", r"\1.stages.\2.downsample."),
    (r"^(decoder)\.up\.(\d+)\.block\.", r"\1.stages.\2.blocks."),
    (r"^(decoder)\.up\.(\d+)\.upsample\.conv1\.", r"\1.stages.\2.upsample.conv."),
    (r"^(encoder|decoder)\.mid_block\.", r"\1.mid."),
    (r"\.nin_shortcut\.", ".shortcut."),
)
AUTOENCODER_SIGNATURE = ("encoder.conv_in.weight", "decoder.conv_out.weight", "quantize.embedding.weight")
# The released image checkpoints' configuration (configs/imagenet_simvq_128_B.yaml), which the reported results need.
PAPER_IMAGE_ARCHITECTURE = {
    "base_channels": 128,
    "channel_multipliers": [1, 2, 2, 4],
    "num_res_blocks": 2,
    "embed_dim": 128,
    "image_size": 128,
    "quantizer_type": "simvq",
}

IMAGE_SIMVQ = Architecture(
    name="SimVQ image tokenizer (taming.models.vq.VQModel + quantize.SimVQ)",
    signature=(*AUTOENCODER_SIGNATURE, "quantize.embedding_proj.weight"),
    rename_rules=(
        *IMAGE_AUTOENCODER_RULES,
        (r"^quantize\.embedding\.weight$", "quantize.frozen_codebook"),
        (r"^quantize\.embedding_proj\.", "quantize.projection."),
    ),
    frozen_keys=("quantize.embedding.weight",),
    infer_config=infer_image_simvq,
    yaml_fields=image_yaml_fields,
    config_defaults={"quantizer_type": "simvq", "norm_num_groups": 32, "image_size": 128},
    reported_results=tuple(
        ({**PAPER_IMAGE_ARCHITECTURE, "codebook_size": size}, results) for size, results in IMAGENET128_REPORTED.items()
    ),
)
IMAGE_VQ = Architecture(
    name="plain-VQ image tokenizer (taming.models.vq.VQModel + a VectorQuantizer with a trained codebook)",
    signature=AUTOENCODER_SIGNATURE,
    rename_rules=IMAGE_AUTOENCODER_RULES,
    frozen_keys=(),
    infer_config=infer_image_autoencoder,
    yaml_fields=image_yaml_fields,
    config_defaults={"quantizer_type": "vq", "norm_num_groups": 32, "image_size": 128},
)


def infer_audio_simvq(weights: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """`SimVQAudioConfig` fields of a `taming.models.vq_audio.VQModel` checkpoint, read off its tensor shapes.

    The SEANet encoder is one `nn.Sequential`: a first convolution, then per stride its residual units and a
    downsampling convolution (kernel `2·ratio`, twice the channels), the LSTM and a last convolution to the latents.
    """
    convs = {
        index: weights[f"encoder.model.{index}.conv.conv.weight_v"]
        for index in _numbered(weights, r"encoder\.model\.(\d+)\.conv\.conv\.weight_v")
    }
    units = _numbered(weights, r"encoder\.model\.(\d+)\.block\.1\.conv\.conv\.weight_v")
    if len(convs) < 3 or not units or min(convs) != 0:
        raise ValueError(
            "The encoder (encoder.model.<i>) lacks its first, downsampling or last convolution or its residual "
            "units: this is not the authors' SEANetEncoder."
        )
    first, *downsampling, last = sorted(convs)
    codebook_size, hidden_size = weights["quantize.embedding.weight"].shape
    unit = weights[f"encoder.model.{units[0]}.block.1.conv.conv.weight_v"]
    hop_length = 1
    ratios = [convs[index].shape[-1] // 2 for index in downsampling]
    for ratio in ratios:
        hop_length *= ratio
    decoder_hidden_size = weights["backbone.embed.weight"].shape[0]
    n_fft = weights["head.out.weight"].shape[0] - 2
    if n_fft != 4 * hop_length:
        raise ValueError(
            f"The ISTFT head predicts {n_fft + 2} values a frame (n_fft {n_fft}), but transformers' ISTFT head (and "
            f"SimVQAudioConfig) use n_fft = 4 × hop = {4 * hop_length}; this checkpoint cannot be converted."
        )
    return {
        "num_filters": convs[first].shape[0],
        "kernel_size": convs[first].shape[-1],
        "last_kernel_size": convs[last].shape[-1],
        "upsampling_ratios": ratios[::-1],  # the encoder runs them in reverse
        "num_residual_layers": sum(index < downsampling[0] for index in units),
        "residual_kernel_size": unit.shape[-1],
        "compress": unit.shape[1] // unit.shape[0],
        "use_conv_shortcut": f"encoder.model.{units[0]}.shortcut.conv.conv.weight_v" in weights,
        "num_lstm_layers": len(_numbered(weights, r"encoder\.model\.\d+\.lstm\.weight_ih_l(\d+)")),
        "hidden_size": hidden_size,
        "codebook_size": codebook_size,
        "projection_bias": "quantize.embedding_proj.bias" in weights,
        "decoder_hidden_size": decoder_hidden_size,
        "decoder_intermediate_size": weights["backbone.convnext.0.pwconv1.weight"].shape[0],
        "decoder_num_layers": len(_numbered(weights, r"backbone\.convnext\.(\d+)\.gamma")),
    }


def audio_yaml_fields(config: dict) -> dict[str, tuple[str, Any]]:
    """`{field: (yaml path, value)}` from the authors' audio LightningCLI config (configs/libritts_24khz.yaml)."""
    model = config.get("model") if isinstance(config, dict) else None
    arguments = (model or {}).get("init_args") or {}
    ddconfig, quantconfig = arguments.get("ddconfig"), arguments.get("quantconfig")
    if not isinstance(ddconfig, dict) or not isinstance(quantconfig, dict):
        raise ValueError(
            "The YAML has no model.init_args.ddconfig and model.init_args.quantconfig: pass the config.yaml that "
            "was saved next to the audio checkpoint (e.g. configs/libritts_24khz.yaml), or leave --config out."
        )
    params = quantconfig.get("params") or {}
    fields = {
        "use_causal_conv": ("ddconfig.causal", ddconfig.get("causal")),
        "hidden_size": ("ddconfig.dimension", ddconfig.get("dimension")),
        "codebook_size": ("quantconfig.params.n_e", params.get("n_e")),
        "commitment_beta": ("quantconfig.params.beta", params.get("beta")),
        "sampling_rate": ("sample_rate", arguments.get("sample_rate")),
    }
    if params.get("e_dim") is not None and params["e_dim"] != ddconfig.get("dimension"):
        raise ValueError(
            f"The YAML disagrees with itself: quantconfig.params.e_dim={params['e_dim']} but ddconfig.dimension="
            f"{ddconfig.get('dimension')}; SimVQ quantizes the encoder output directly."
        )
    return {name: ("model.init_args." + path, value) for name, (path, value) in fields.items() if value is not None}


# taming.models.vq_audio.VQModel (their names) → SimVQAudioModel. The encoder's nn.Sequential indices carry over (our
# WavTokenizerEncoder lists the same layers in the same order); old-style weight norm (weight_g, weight_v) becomes
# the parametrization (original0, original1); the backbone's LayerNorms become one-row adaptive norms (see `adapt`).
AUDIO_SIMVQ = Architecture(
    name="SimVQ speech tokenizer (taming.models.vq_audio.VQModel + quantize.SimVQ1D)",
    signature=(
        "encoder.model.0.conv.conv.weight_v",
        "backbone.embed.weight",
        "head.out.weight",
        "quantize.embedding.weight",
        "quantize.embedding_proj.weight",
    ),
    rename_rules=(
        (r"^encoder\.model\.", "encoder.layers."),
        (r"\.conv\.conv\.weight_g$", ".conv.parametrizations.weight.original0"),
        (r"\.conv\.conv\.weight_v$", ".conv.parametrizations.weight.original1"),
        (r"\.conv\.conv\.bias$", ".conv.bias"),
        (r"^quantize\.embedding\.weight$", "quantize.frozen_codebook"),
        (r"^quantize\.embedding_proj\.", "quantize.projection."),
        (r"^(backbone\.(?:convnext\.\d+\.)?norm)\.weight$", r"\1.scale.weight"),
        (r"^(backbone\.(?:convnext\.\d+\.)?norm)\.bias$", r"\1.shift.weight"),
        (r"^head\.out\.", "head.linear."),
    ),
    frozen_keys=("quantize.embedding.weight",),
    infer_config=infer_audio_simvq,
    yaml_fields=audio_yaml_fields,
    config_defaults={"decoder_attention_num_groups": 32},  # their Normalize() in the backbone's pos_net
    config_class=SimVQAudioConfig,
    model_class=SimVQAudioModel,
    build_processor=lambda config: SimVQAudioFeatureExtractor(
        sampling_rate=config.sampling_rate, hop_length=config.hop_length
    ),
    # The SEANet decoder VQModel builds but its decode never runs; the ISTFT window, which our head rebuilds.
    dropped_keys=(r"decoder\..*", r"head\.istft\.window"),
    adapt=lambda name, tensor: tensor[None] if re.search(r"norm\.(scale|shift)\.weight$", name) else tensor,
    card_dataset=None,
)
# Most specific first: a SimVQ checkpoint also carries the plain-VQ signature.
ARCHITECTURES = (AUDIO_SIMVQ, IMAGE_SIMVQ, IMAGE_VQ)


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    return shown + (f" … ({len(items)} in all)" if len(items) > MAX_LISTED else "")


def load_original_state_dict(path: str | Path, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The `state_dict` of a Lightning checkpoint (or a bare state dict), loaded with the safe unpickler first.

    `weights_only=True` refuses any pickled object but tensors and containers; such a file loads only with
    `trust_pickle=True`, because unpickling it can run arbitrary code.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No checkpoint at {path}.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as error:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if not refused:
            raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
        raise ValueError(
            f"{path} holds pickled Python objects besides tensors (first: {refused.group(1)}), which the safe loader "
            "(torch.load weights_only=True) refuses. Unpickling them can run arbitrary code: if you trust where the "
            "file comes from, rerun with --trust_pickle."
        ) from None
    except ModuleNotFoundError as error:
        raise ValueError(f"Unpickling {path} needs the module {error.name!r}; install it to convert.") from error
    except Exception as error:  # torch raises RuntimeError, EOFError, KeyError, … for damaged files
        raise ValueError(
            f"{path} is truncated or corrupt ({type(error).__name__}: {str(error)[:200]}); download it again."
        ) from error
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise ValueError(f"{path} holds no state_dict of tensors: not a Lightning checkpoint of the authors' code.")
    return state_dict


def detect_architecture(state_dict: Mapping[str, torch.Tensor]) -> Architecture:
    """The first architecture whose signature keys are all in `state_dict`; else an error listing the missing ones."""
    for architecture in ARCHITECTURES:
        if all(key in state_dict for key in architecture.signature):
            return architecture
    missing = [key for key in ARCHITECTURES[-1].signature if key not in state_dict]
    raise ValueError(
        f"Not a SimVQ checkpoint: the state_dict lacks {_listed(missing)} (it has {_listed(sorted(state_dict))})."
    )


def ema_key(key: str) -> str:
    """LitEma's buffer for parameter `key`: its name with the dots removed, under `model_ema.`."""
    return EMA_PREFIX + key.replace(".", "")


def select_weights(
    state_dict: Mapping[str, torch.Tensor], architecture: Architecture, use_ema: bool = True
) -> dict[str, torch.Tensor]:
    """The tokenizer's tensors under their original names: the EMA copy of every trained one (the authors evaluate
    with EMA), or the raw weights with `use_ema=False`. Frozen tensors have no EMA copy and always come raw."""
    weights = {
        key: value
        for key, value in state_dict.items()
        if not key.startswith((EMA_PREFIX, *IGNORED_PREFIXES))
        and not any(re.fullmatch(pattern, key) for pattern in architecture.dropped_keys)
    }
    if not use_ema:
        return weights
    if not any(key.startswith(EMA_PREFIX) for key in state_dict):
        raise ValueError(
            "The checkpoint has no EMA weights (model_ema.*; trained with use_ema: False?): pass --no-ema to "
            "convert its raw weights."
        )
    missing = [
        ema_key(key) for key in weights if key not in architecture.frozen_keys and ema_key(key) not in state_dict
    ]
    if missing:
        raise ValueError(f"The checkpoint's EMA lacks {_listed(missing)}; pass --no-ema to convert the raw weights.")
    return {
        key: value if key in architecture.frozen_keys else state_dict[ema_key(key)] for key, value in weights.items()
    }


def read_yaml_fields(path: str | Path, architecture: Architecture) -> dict[str, tuple[str, Any]]:
    try:
        parsed = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as error:
        raise ValueError(f"{path} is not valid YAML: {error}") from error
    return architecture.yaml_fields(parsed)


def config_fields(
    weights: Mapping[str, torch.Tensor], architecture: Architecture, yaml_path: str | Path | None = None
) -> dict[str, Any]:
    """Config fields from the shapes, completed by the YAML; raises naming every field where the two disagree."""
    inferred = architecture.infer_config(weights)
    fields = {**architecture.config_defaults, **inferred}
    if yaml_path is None:
        return fields
    from_yaml = read_yaml_fields(yaml_path, architecture)
    # What the tensors determine must agree; the rest (image size, commitment weight) the YAML alone can tell.
    checked = {*inferred, "quantizer_type"}
    disagreements = [
        f"{path}={value!r} but the checkpoint's tensors give {name}={fields[name]!r}"
        for name, (path, value) in from_yaml.items()
        if name in checked and value != fields[name]
    ]
    if disagreements:
        raise ValueError(
            f"The YAML {yaml_path} does not describe this checkpoint: " + "; ".join(disagreements) + ". Pass the "
            "config.yaml saved with this checkpoint, or leave --config out to read the architecture off the tensors."
        )
    return {**fields, **{name: value for name, (_, value) in from_yaml.items()}}


def load_converted_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], architecture: Architecture):
    """Rename and load `weights` into `model`, requiring the same keys and shapes; errors say which differ."""
    original_names = {architecture.rename(key): key for key in weights}
    converted = {name: architecture.adapt(name, weights[key]) for name, key in original_names.items()}
    expected = model.state_dict()
    unexpected = sorted(original_names[name] for name in set(converted) - set(expected))
    missing = sorted(set(expected) - set(converted))
    wrong_shapes = [
        f"{original_names[name]} (our {name}): checkpoint {tuple(value.shape)}, model {tuple(expected[name].shape)}"
        for name, value in converted.items()
        if name in expected and value.shape != expected[name].shape
    ]
    problems = [
        f"{label} {_listed(items)}"
        for label, items in (
            ("checkpoint tensors the model has no place for:", unexpected),
            ("model tensors the checkpoint lacks (our names):", missing),
            ("shapes disagree:", wrong_shapes),
        )
        if items
    ]
    if problems:
        raise ValueError(
            f"The checkpoint does not match the {architecture.name} its shapes describe — " + "; ".join(problems)
        )
    model.load_state_dict(converted, strict=True)


def reported_results(config, architecture: Architecture) -> dict[str, float]:
    """The paper's results for a checkpoint of exactly a released configuration; empty otherwise."""
    for fields, results in architecture.reported_results:
        if all(getattr(config, name) == value for name, value in fields.items()):
            return results
    return {}


def write_model_card(
    model, architecture: Architecture, checkpoint: Path, output_dir: Path, repo_id: str | None = None
) -> None:
    """The package's model card, naming the source checkpoint and the paper's numbers as reported."""
    results = reported_results(model.config, architecture)
    if results:
        results = {**results, "num_images": 50_000, "num_tokens": 50_000 * model.config.latent_size**2}
    card = build_model_card(
        model,
        results,
        dataset_name=architecture.card_dataset,
        model_name=output_dir.name,
        repo_id=repo_id,
        reported_by=PAPER if results else None,
        source_checkpoint=checkpoint.name,
    )
    card.save(output_dir / "README.md")


def convert_original_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    config_yaml: str | Path | None = None,
    use_ema: bool = True,
    trust_pickle: bool = False,
    push_to_hub: bool = False,
    repo_id: str | None = None,
):
    """Convert one of the authors' checkpoints into a folder `AutoModel.from_pretrained` loads; returns the model."""
    checkpoint, output_dir = Path(checkpoint), Path(output_dir)
    state_dict = load_original_state_dict(checkpoint, trust_pickle=trust_pickle)
    architecture = detect_architecture(state_dict)
    weights = select_weights(state_dict, architecture, use_ema=use_ema)
    model_config = architecture.config_class(**config_fields(weights, architecture, config_yaml))
    model = architecture.model_class(model_config).eval()
    load_converted_weights(model, weights, architecture)
    model.save_pretrained(output_dir)
    architecture.build_processor(model_config).save_pretrained(output_dir)
    if architecture.card_dataset is not None:
        write_model_card(model, architecture, checkpoint, output_dir, repo_id)
    logger.info(f"Converted {checkpoint} ({architecture.name}, {'EMA' if use_ema else 'raw'} weights) to {output_dir}")
    if push_to_hub:
        from huggingface_hub import HfApi

        api = HfApi()
        repo = api.create_repo(repo_id or output_dir.name, exist_ok=True).repo_id
        api.upload_folder(folder_path=output_dir, repo_id=repo, commit_message=f"Convert {checkpoint.name}")
    return model


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="the authors' Lightning .ckpt file")
    parser.add_argument("--config", help="their config.yaml (optional): must agree with the tensor shapes")
    parser.add_argument("--output_dir", required=True, help="folder to write the Hugging Face model into")
    parser.add_argument(
        "--no-ema",
        dest="use_ema",
        action="store_false",
        help="convert the raw weights instead of the EMA ones the authors evaluate with",
    )
    parser.add_argument(
        "--trust_pickle",
        action="store_true",
        help="allow Python objects besides tensors in the checkpoint (unpickling can run code)",
    )
    parser.add_argument("--push_to_hub", action="store_true", help="upload the folder to the Hub as well")
    parser.add_argument("--repo_id", help="Hub repository for --push_to_hub (default: the output folder's name)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    convert_original_checkpoint(
        args.checkpoint,
        args.output_dir,
        config_yaml=args.config,
        use_ema=args.use_ema,
        trust_pickle=args.trust_pickle,
        push_to_hub=args.push_to_hub,
        repo_id=args.repo_id,
    )


if __name__ == "__main__":
    main()
