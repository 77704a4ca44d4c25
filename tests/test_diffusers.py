import dataclasses
import inspect
import json

import pytest
import torch
from diffusers.models.autoencoders.vae import DecoderOutput
from safetensors.torch import load_file
from transformers import PreTrainedConfig

from hf_simvq.models.simvq.configuration_simvq import SimVQConfig
from hf_simvq.models.simvq.diffusers_simvq import SIMVQ_FIELD_NAMES, SimVQDiffusersModel
from hf_simvq.models.simvq.modeling_simvq import SimVQModel

TINY = {
    "image_size": 32,
    "base_channels": 32,
    "channel_multipliers": [1, 2],
    "num_res_blocks": 1,
    "embed_dim": 16,
    "codebook_size": 64,
}
CODEBOOK_KEYS = {
    "simvq": "quantize.frozen_codebook",
    "vq": "quantize.embedding.weight",
    "multiscale_simvq": "quantize.frozen_codebook",
}


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1


@pytest.fixture(params=["simvq", "vq", "multiscale_simvq"])
def quantizer_type(request) -> str:
    return request.param


def raw_codebook(model: torch.nn.Module, quantizer_type: str) -> torch.Tensor:
    return model.state_dict()[CODEBOOK_KEYS[quantizer_type]]


def config_fields(config) -> dict:
    return {field: config[field] if isinstance(config, dict) else getattr(config, field) for field in SIMVQ_FIELD_NAMES}


def test_arguments_are_simvq_configs_model_fields_with_its_defaults_then_the_diffusers_only_fields():
    base_fields = {field.name for field in dataclasses.fields(PreTrainedConfig)}
    own_fields = {
        field.name: field.default for field in dataclasses.fields(SimVQConfig) if field.name not in base_fields
    }
    assert set(SIMVQ_FIELD_NAMES) == set(own_fields)
    parameters = {
        name: parameter.default
        for name, parameter in list(inspect.signature(SimVQDiffusersModel.__init__).parameters.items())[1:]
    }
    assert {name: parameters.pop(name) for name in own_fields} == own_fields
    assert parameters == {"scaling_factor": 1.0, "force_upcast": False}


def test_the_saved_config_is_the_signature_and_unknown_arguments_are_refused(tmp_path):
    model = SimVQDiffusersModel(**TINY, scaling_factor=0.5)
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    signature = list(inspect.signature(SimVQDiffusersModel.__init__).parameters)[1:]
    assert {key for key in saved if not key.startswith("_")} == set(signature)
    assert saved["scaling_factor"] == 0.5 and saved["embed_dim"] == TINY["embed_dim"]
    with pytest.raises(ValueError, match="unknown arguments \\['codebok_size'\\]"):
        SimVQDiffusersModel(codebok_size=64)
    with pytest.raises(ValueError, match="scaling_factor"):
        SimVQDiffusersModel(**TINY, scaling_factor=0.0)


@pytest.mark.parametrize("low_cpu_mem_usage", [True, False])
def test_save_and_load_give_bit_identical_outputs_and_restore_the_frozen_codebook(
    quantizer_type, low_cpu_mem_usage, images, tmp_path
):
    torch.manual_seed(0)
    model = SimVQDiffusersModel(**TINY, quantizer_type=quantizer_type).eval()
    with torch.no_grad():
        raw_codebook(model, quantizer_type).mul_(3.0)  # far from anything an init would draw
        expected_latents = model.encode(images).latents
        expected_indices = model.quantize(expected_latents).indices
        expected = model(images)
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "diffusion_pytorch_model.safetensors")
    assert saved.keys() == model.state_dict().keys()

    torch.manual_seed(1)
    loaded = SimVQDiffusersModel.from_pretrained(tmp_path, low_cpu_mem_usage=low_cpu_mem_usage)
    torch.manual_seed(1)
    fresh = SimVQDiffusersModel(**TINY, quantizer_type=quantizer_type)
    assert torch.equal(raw_codebook(loaded, quantizer_type), raw_codebook(model, quantizer_type))
    assert not torch.equal(raw_codebook(fresh, quantizer_type), raw_codebook(model, quantizer_type))
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    with torch.no_grad():
        latents = loaded.encode(images).latents
        actual = loaded(images)
    assert torch.equal(latents, expected_latents)
    assert torch.equal(loaded.quantize(latents).indices, expected_indices)
    assert torch.equal(actual.sample, expected.sample)
    assert torch.equal(actual.commit_loss, expected.commit_loss)


def test_conversion_to_diffusers_and_back_is_lossless(quantizer_type, images):
    torch.manual_seed(0)
    transformers_model = SimVQModel(SimVQConfig(**TINY, quantizer_type=quantizer_type)).eval()
    diffusers_model = SimVQDiffusersModel.from_transformers(transformers_model)
    round_trip = diffusers_model.to_transformers()

    assert config_fields(diffusers_model.config) == config_fields(transformers_model.config)
    assert config_fields(round_trip.config) == config_fields(transformers_model.config)
    reference = transformers_model.state_dict()
    for converted in (diffusers_model, round_trip):
        state_dict = converted.state_dict()
        assert state_dict.keys() == reference.keys()
        for name, tensor in state_dict.items():
            assert torch.equal(tensor, reference[name]), name
            assert tensor.data_ptr() != reference[name].data_ptr(), f"{name} shares memory with the source"

    with torch.no_grad():
        expected = transformers_model(images)
        actual = round_trip(images)
    assert torch.equal(actual.reconstruction, expected.reconstruction)
    assert torch.equal(actual.image_tokens, expected.image_tokens)


def test_vqmodel_interface_matches_the_transformers_model(quantizer_type, images):
    torch.manual_seed(0)
    transformers_model = SimVQModel(SimVQConfig(**TINY, quantizer_type=quantizer_type)).eval()
    diffusers_model = SimVQDiffusersModel.from_transformers(transformers_model)
    with torch.no_grad():
        expected = transformers_model.encode(images)
        reconstruction = transformers_model.decode(expected.quantized)
        h = diffusers_model.encode(images).latents
        decoded = diffusers_model.decode(h)
        unquantized = diffusers_model.decode(h, force_not_quantize=True)
        batch, dim, height, width = h.shape
        codes = diffusers_model.quantize.get_codebook_entry(expected.image_tokens, (batch, height, width, dim))
        from_codes = diffusers_model.decode(codes, force_not_quantize=True)
        forward = diffusers_model(images, return_dict=False)

    assert torch.equal(h, expected.latents)  # encode stops before quantization, as VQModel's does
    assert isinstance(decoded, DecoderOutput)
    assert torch.equal(decoded.sample, reconstruction)
    assert torch.equal(decoded.commit_loss, expected.quantization_loss)
    assert torch.equal(forward[0], reconstruction) and torch.equal(forward[1], expected.quantization_loss)

    assert torch.equal(unquantized.sample, transformers_model.decode(h))
    assert not torch.allclose(unquantized.sample, decoded.sample)
    assert torch.equal(unquantized.commit_loss, torch.zeros(batch))

    assert torch.equal(codes, expected.quantized)
    assert torch.equal(from_codes.sample, reconstruction)


def test_conversion_keeps_each_tensors_dtype_and_the_training_mode():
    transformers_model = SimVQModel(SimVQConfig(**TINY)).to(torch.bfloat16).train()
    diffusers_model = SimVQDiffusersModel.from_transformers(transformers_model)
    assert diffusers_model.training
    assert {tensor.dtype for tensor in diffusers_model.state_dict().values()} == {torch.bfloat16}
    round_trip = diffusers_model.eval().to_transformers()
    assert not round_trip.training
    assert {tensor.dtype for tensor in round_trip.state_dict().values()} == {torch.bfloat16}


@pytest.mark.parametrize(
    "invalid, field",
    [
        ({"quantizer_type": "fsq"}, "quantizer_type"),
        ({"image_size": 33}, "image_size"),
        ({"norm_num_groups": 24}, "norm_num_groups"),
        ({"codebook_size": 1}, "codebook_size"),
        ({"commitment_beta": -1.0}, "commitment_beta"),
    ],
)
def test_invalid_config_raises_the_same_value_error_as_simvq_config(invalid, field):
    fields = {**TINY, **invalid}
    with pytest.raises(ValueError, match=field) as from_config:
        SimVQConfig(**fields)
    with pytest.raises(ValueError, match=field) as from_model:
        SimVQDiffusersModel(**fields)
    assert str(from_model.value) == str(from_config.value)


def test_encode_rejects_images_the_encoder_cannot_downsample_evenly():
    model = SimVQDiffusersModel(**TINY)
    with pytest.raises(ValueError, match="multiples"):
        model.encode(torch.zeros(1, 3, 31, 32))
    with pytest.raises(ValueError, match="pixel_values"):
        model.encode(torch.zeros(1, 1, 32, 32))
