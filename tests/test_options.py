"""Command-line options generated from the config dataclass."""

import argparse
from pathlib import Path

import pytest
import yaml
from conftest import load_script

from hf_simvq import SimVQConfig
from hf_simvq.training.options import (
    DERIVED_FIELDS,
    add_config_arguments,
    config_field_docs,
    config_fields,
    config_from_args,
    load_preset,
)

CONFIG_DIR = Path(__file__).parents[1] / "training" / "configs"


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, SimVQConfig)
    return parser


def test_every_config_field_is_an_option_with_its_docstring_help(parser):
    options = {action.dest: action for action in parser._actions}
    fields = [field.name for field in config_fields(SimVQConfig)]
    assert "scales" in fields and "num_shared_phi" in fields and "return_dict" not in fields
    for name in fields:
        if name in DERIVED_FIELDS:
            assert name not in options
            continue
        assert name in options, name
        assert options[name].help == config_field_docs(SimVQConfig)[name] and options[name].help, name
    assert config_field_docs(SimVQConfig)["quant_resi"].startswith('`"multiscale_simvq"` only: weight `r`')


def test_options_build_the_config_of_their_types(parser):
    args = parser.parse_args(
        ["--quantizer_type", "multiscale_simvq", "--scales", "1", "2", "4", "--quant_resi", "0.25",
         "--no-projection_bias", "--codebook_size", "1024", "--embed_dim", "16", "--base_channels", "32",
         "--channel_multipliers", "1", "2", "2", "--norm_num_groups", "8", "--codebook_init", "uniform",
         "--train_codebook"]
    )  # fmt: skip
    config = config_from_args(args, SimVQConfig, image_size=16)
    assert config.scales == [1, 2, 4] and config.quant_resi == 0.25 and config.projection_bias is False
    assert config.codebook_init == "uniform" and config.train_codebook is True
    assert config.codebook_size == 1024 and config.channel_multipliers == [1, 2, 2] and config.image_size == 16
    # Unset options leave the config's own defaults.
    assert config.num_shared_phi == SimVQConfig().num_shared_phi
    assert config.codebook_init_std == pytest.approx(16**-0.5)


def test_invalid_values_reach_the_config_checks(parser):
    args = parser.parse_args(["--quant_resi", "2"])
    with pytest.raises(ValueError, match="quant_resi"):
        config_from_args(args, SimVQConfig)


def test_preset_with_an_unknown_option_is_refused(parser, tmp_path, capsys):
    preset = tmp_path / "typo.yaml"
    preset.write_text("codebok_size: 8\n")
    with pytest.raises(SystemExit):
        load_preset(str(preset), parser, tmp_path)
    assert "unknown options: codebok_size" in capsys.readouterr().err
    (tmp_path / "good.yaml").write_text("codebook_size: 8\n")
    assert load_preset("good", parser, tmp_path) == {"codebook_size": 8}


@pytest.mark.parametrize("preset", sorted(CONFIG_DIR.glob("*.yaml")), ids=lambda path: path.stem)
def test_every_shipped_preset_loads_into_exactly_one_trainer_with_its_values(preset):
    """A preset with a typo, or one that no trainer reads, fails here rather than at the start of a long run."""
    values = yaml.safe_load(preset.read_text())
    loaded = {}
    for script in ("train.py", "train_audio.py"):
        trainer = load_script(CONFIG_DIR.parent / script)
        try:
            loaded[script] = trainer.parse_args(["--config", preset.stem])
        except SystemExit:
            continue
    assert len(loaded) == 1, f"{preset.name} loads into {sorted(loaded) or 'no trainer'}"
    (args,) = loaded.values()
    assert {name: getattr(args, name) for name in values} == values
