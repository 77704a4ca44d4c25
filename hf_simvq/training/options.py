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

# Fields that the scripts set from other options (the image size is `--resolution`, shared with the data).
DERIVED_FIELDS = ("image_size",)
_ARG_DOC = re.compile(r"^ {8}(\w+) \((.*?)\):\s*(.*)$")


def config_field_docs(config_class: type[PreTrainedConfig]) -> dict[str, str]:
    """`{field: description}` from the `Args:` section of a transformers-style config docstring."""
    docs: dict[str, str] = {}
    current = None
    for line in (config_class.__doc__ or "").splitlines():
        match = _ARG_DOC.match(line)
        if match:
            current = match.group(1)
            docs[current] = match.group(3)
        elif current and line.startswith(" " * 12):
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


def config_fields(config_class: type[PreTrainedConfig]) -> list[dataclasses.Field]:
    """The fields the config class declares itself (not those of `PreTrainedConfig`), in declaration order."""
    own = config_class.__annotations__
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
    "config_field_docs",
    "config_fields",
    "config_from_args",
    "data_source",
    "load_preset",
]
