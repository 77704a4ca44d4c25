import pytest

from hf_simvq import SimVQAudioConfig, SimVQConfig


def test_defaults_are_the_papers_tokenizer():
    config = SimVQConfig()
    assert config.channel_multipliers == [1, 2, 2, 4]
    assert config.latent_size == 16  # 128×128 → 16×16 tokens
    assert config.codebook_init_std == pytest.approx(128**-0.5)
    assert config.commitment_beta == 0.25 and config.projection_bias
    assert config.codebook_init == "normal" and not config.train_codebook  # the paper's frozen Gaussian C


def test_round_trip(tmp_path):
    config = SimVQConfig(codebook_size=1024, embed_dim=64, quantizer_type="vq")
    config.save_pretrained(tmp_path)
    loaded = SimVQConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"codebook_size": 1}, "codebook_size"),
        ({"image_size": 100}, "image_size"),
        ({"quantizer_type": "fsq"}, "quantizer_type"),
        ({"base_channels": 0}, "base_channels"),
        ({"embed_dim": -4}, "embed_dim"),
        ({"num_channels": 0}, "num_channels"),
        ({"channel_multipliers": [1, 0]}, "channel_multipliers"),
        ({"base_channels": 48}, "norm_num_groups"),
        ({"codebook_init_std": 0.0}, "codebook_init_std"),
        ({"codebook_init": "xavier"}, "codebook_init"),
        ({"quantizer_type": "vq", "train_codebook": True}, "train_codebook"),
    ],
)
def test_invalid_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        SimVQConfig(**overrides)


@pytest.mark.parametrize("config_class", [SimVQConfig, SimVQAudioConfig])
def test_codebook_ablations_round_trip_and_are_checked_on_both_modalities(config_class, tmp_path):
    config = config_class(codebook_init="uniform", train_codebook=True)
    config.save_pretrained(tmp_path)
    loaded = config_class.from_pretrained(tmp_path)
    assert loaded.codebook_init == "uniform" and loaded.train_codebook is True
    with pytest.raises(ValueError, match="codebook_init"):
        config_class(codebook_init="Normal")
    with pytest.raises(ValueError, match="train_codebook"):
        config_class(quantizer_type="vq", train_codebook=True)
