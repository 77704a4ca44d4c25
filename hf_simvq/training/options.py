"""Command-line options shared by the training and evaluation scripts.

The model options are generated from the fields of the model's configuration class, with their help taken from its
docstring: every config field is settable from the command line and none is spelled a second time here. Presets are
YAML files of option values, checked against the parser so that a typo cannot pass silently.
"""

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path

import yaml
from transformers import PreTrainedConfig

from .deferred_quantization import DEFERRED_CODEBOOK_INITS
from .losses import RECONSTRUCTION_LOSSES

# Fields that the scripts set from other options (the image size is `--resolution`, shared with the data).
DERIVED_FIELDS = ("image_size",)
_ARG_DOC = re.compile(r"^( +)(\w+) \((.*?)\):\s*(.*)$")


def config_field_docs(config_class: type[PreTrainedConfig]) -> dict[str, str]:
    """`{field: description}` from the `Args:` sections of the docstrings of `config_class` and of its parent configs
    (transformers-style; the entry's indentation is read from the docstring, which may be dedented or not)."""
    docs: dict[str, str] = {}
    for owner in reversed(_config_classes(config_class)):  # a subclass's description wins
        current, indent = None, None
        for line in (owner.__doc__ or "").splitlines():
            match = _ARG_DOC.match(line)
            if match and indent in (None, len(match.group(1))):
                current, indent = match.group(2), len(match.group(1))
                docs[current] = match.group(4)
            elif current and line.strip() and len(line) - len(line.lstrip()) > indent:
                docs[current] = (docs[current] + " " + line.strip()).strip()
            else:
                current = None
    return docs


def _config_classes(config_class: type[PreTrainedConfig]) -> list[type]:
    """`config_class` and the model configs it extends (e.g. `WavTokenizerConfig`), without `PreTrainedConfig`."""
    return [
        owner
        for owner in config_class.__mro__
        if isinstance(owner, type) and issubclass(owner, PreTrainedConfig) and owner is not PreTrainedConfig
    ]


def config_fields(config_class: type[PreTrainedConfig]) -> list[dataclasses.Field]:
    """The fields the config class and the model configs it extends declare (not those of `PreTrainedConfig`), in
    declaration order."""
    own = {name for owner in _config_classes(config_class) for name in owner.__annotations__}
    return [field for field in dataclasses.fields(config_class) if field.name in own]


def _argument_spec(annotation) -> dict:
    """argparse keywords for a field annotated `int`, `float`, `str`, `bool`, `list[int] | tuple`, or `X | None`."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        annotation = members[0]
    if annotation is bool:
        return {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(annotation) in (list, tuple):
        return {"type": typing.get_args(annotation)[0], "nargs": "+"}
    return {"type": annotation}


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type[PreTrainedConfig]) -> None:
    """One `--<field>` option per config field; unset options (None) leave the config's default in place."""
    group = parser.add_argument_group(f"model ({config_class.__name__} fields; unset: the preset, else its default)")
    docs = config_field_docs(config_class)
    for field in config_fields(config_class):
        if field.name not in DERIVED_FIELDS:
            group.add_argument(f"--{field.name}", default=None, help=docs.get(field.name), **_argument_spec(field.type))


def config_from_args(args: argparse.Namespace, config_class: type[PreTrainedConfig], **derived) -> PreTrainedConfig:
    """The config of the options that were set (by the command line or the preset), plus the `derived` fields."""
    values = {
        field.name: getattr(args, field.name)
        for field in config_fields(config_class)
        if field.name not in DERIVED_FIELDS and getattr(args, field.name) is not None
    }
    return config_class(**values, **derived)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the images come from: a Hub/local dataset, an image folder, or (neither) the embedded default photos."""
    group = parser.add_argument_group("data (default: crops of the photos that ship with scikit-image)")
    group.add_argument("--dataset_name", default=None, help="Hub dataset id or local dataset path.")
    group.add_argument("--dataset_config_name", default=None)
    group.add_argument("--train_data_dir", default=None, help="A folder of images (datasets' imagefolder).")
    group.add_argument("--image_column", default="image")
    group.add_argument("--streaming", action="store_true", help="Stream the Hub dataset instead of downloading it.")
    group.add_argument("--cache_dir", default=None)


def data_source(args: argparse.Namespace) -> dict:
    """The data options of `add_data_arguments`, as keyword arguments of `hf_simvq.training.data.load_image_split`."""
    names = ("dataset_name", "dataset_config_name", "train_data_dir", "image_column", "streaming", "cache_dir")
    return {name: getattr(args, name) for name in names}


def add_image_training_arguments(parser: argparse.ArgumentParser) -> None:
    """The training images: their size, how many of the embedded ones, the validation split and augmentation."""
    group = parser.add_argument_group("training images")
    group.add_argument("--shuffle_buffer_size", type=int, default=10_000, help="With --streaming.")
    group.add_argument("--resolution", type=int, default=32, help="Side of the square training images.")
    group.add_argument("--validation_split", default="validation")
    group.add_argument("--num_train_images", type=int, default=8192, help="Crops of the embedded data.")
    group.add_argument("--num_validation_images", type=int, default=4096, help="Embedded data; or held out.")
    group.add_argument(
        "--random_crop",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="Random crops and flips for training, drawn from (--seed, epoch, example index): resumable exactly.",
    )
    group.add_argument("--dataloader_num_workers", type=int, default=0)


def add_image_loss_arguments(parser: argparse.ArgumentParser) -> None:
    """The image tokenizer's objective: reconstruction, LPIPS, PatchGAN, quantizer weight and Deferred Quantization."""
    group = parser.add_argument_group("losses")
    group.add_argument("--reconstruction_loss", choices=sorted(RECONSTRUCTION_LOSSES), default="l1")
    group.add_argument("--quantizer_loss_weight", type=float, default=1.0)
    group.add_argument("--perceptual_weight", type=float, default=0.0, help="LPIPS-VGG weight; 0 turns it off.")
    group.add_argument("--vgg16_weights", default=None, help="Local torchvision vgg16-397923af.pth for LPIPS.")
    group.add_argument("--discriminator_weight", type=float, default=0.0, help="PatchGAN weight; 0 turns it off.")
    group.add_argument("--discriminator_start_step", type=int, default=0)
    group.add_argument("--discriminator_layers", type=int, default=3)
    group.add_argument("--discriminator_learning_rate", type=float, default=None, help="Default: --learning_rate.")
    group.add_argument("--generator_loss", choices=["non-saturating", "hinge"], default="non-saturating")
    add_deferred_quantization_arguments(group)


def add_deferred_quantization_arguments(group: argparse._ArgumentGroup) -> None:
    """Deferred Quantization (Zhao et al.), the same two options for every tokenizer trainer."""
    group.add_argument(
        "--deferred_quantization_steps",
        type=int,
        default=0,
        help="Train the autoencoder unquantized for this many steps, then initialise the codebook from its latents.",
    )
    group.add_argument(
        "--deferred_init_batches",
        type=int,
        default=16,
        help="Batches of latents for that init (`samples` reads more if they hold fewer than 2 latents per code).",
    )
    group.add_argument(
        "--deferred_codebook_init",
        choices=DEFERRED_CODEBOOK_INITS,
        default="fit",
        help="`fit`: SimVQ's W, b moment-matched to the latents (C stays Gaussian), VQ's codebook k-means; "
        "`samples`: the codebook becomes K distinct latents (SimVQ: C holds them whitened, still frozen).",
    )


def add_optimization_arguments(parser: argparse.ArgumentParser) -> None:
    """Batch, optimizer, schedule, precision and length of a run: the same for every tokenizer trainer."""
    group = parser.add_argument_group("optimisation")
    group.add_argument("--train_batch_size", type=int, default=64, help="Per process.")
    group.add_argument("--eval_batch_size", type=int, default=256)
    group.add_argument("--gradient_accumulation_steps", type=int, default=1)
    group.add_argument("--learning_rate", type=float, default=1e-3)
    group.add_argument(
        "--quantizer_learning_rate",
        type=float,
        default=None,
        help="For SimVQ's W and b (plain VQ's codebook); default: --learning_rate.",
    )
    group.add_argument("--scale_lr", action="store_true", help="Multiply the lr by processes × batch × accumulation.")
    group.add_argument("--lr_scheduler", default="constant", help="Any diffusers scheduler name (cosine, …).")
    group.add_argument("--lr_warmup_steps", type=int, default=0)
    group.add_argument("--adam_beta1", type=float, default=0.9)
    group.add_argument("--adam_beta2", type=float, default=0.99)
    group.add_argument("--adam_weight_decay", type=float, default=0.0)
    group.add_argument("--adam_epsilon", type=float, default=1e-8)
    group.add_argument("--max_grad_norm", type=float, default=1.0)
    group.add_argument("--max_train_steps", type=int, default=None, help="Overrides --num_train_epochs.")
    group.add_argument("--num_train_epochs", type=int, default=None)
    group.add_argument("--ema_decay", type=float, default=0.999)
    group.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    group.add_argument("--seed", type=int, default=0)


def add_output_arguments(parser: argparse.ArgumentParser, default_output_dir: str) -> None:
    """Logging, validation, checkpoints and the Hub: where a run reports and what it leaves behind."""
    group = parser.add_argument_group("logging, checkpoints, Hub")
    group.add_argument("--output_dir", default=default_output_dir)
    group.add_argument("--logging_steps", type=int, default=10)
    group.add_argument("--usage_window", type=int, default=50, help="Steps over which training utilization counts.")
    group.add_argument("--validation_steps", type=int, default=250)
    group.add_argument("--checkpointing_steps", type=int, default=500)
    group.add_argument("--checkpoints_total_limit", type=int, default=None)
    group.add_argument("--resume_from_checkpoint", default=None, help='A checkpoint folder, or "latest".')
    group.add_argument("--report_to", default=None, help="tensorboard, wandb, … (Accelerate trackers).")
    group.add_argument("--push_to_hub", action="store_true")
    group.add_argument("--hub_model_id", default=None)
    group.add_argument("--hub_token", default=None)


def check_run_length(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """A run needs a length, and a stream (no length of its own) needs it in steps."""
    if args.max_train_steps is None and args.num_train_epochs is None:
        parser.error("Give --max_train_steps or --num_train_epochs.")
    if getattr(args, "streaming", False) and args.max_train_steps is None:
        parser.error("--streaming datasets have no length: give --max_train_steps.")


def load_preset(name_or_path: str, parser: argparse.ArgumentParser, config_dir: Path) -> dict:
    """The option values of a YAML preset (a name in `config_dir` or a path), checked against `parser`'s options."""
    path = Path(name_or_path)
    if not path.suffix:
        path = config_dir / f"{name_or_path}.yaml"
    if not path.is_file():
        presets = ", ".join(sorted(p.stem for p in config_dir.glob("*.yaml")))
        parser.error(f"No preset {name_or_path!r}: give a YAML path or one of: {presets}.")
    values = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(values) - set(vars(parser.parse_args([]))))
    if unknown:
        parser.error(f"{path} sets unknown options: {', '.join(unknown)}.")
    return values


__all__ = [
    "add_config_arguments",
    "add_data_arguments",
    "add_image_loss_arguments",
    "add_image_training_arguments",
    "add_optimization_arguments",
    "add_output_arguments",
    "check_run_length",
    "config_field_docs",
    "config_fields",
    "config_from_args",
    "data_source",
    "load_preset",
]
