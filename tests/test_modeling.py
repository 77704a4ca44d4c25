import pytest
import torch
from conftest import run_without_hf_simvq, tiny_config
from safetensors.torch import load_file
from transformers import AutoConfig, AutoImageProcessor, AutoModel

from hf_simvq import SimVQImageProcessor, SimVQModel


def test_fresh_codebook_is_the_papers_gaussian_not_the_generic_init():
    config = tiny_config(codebook_size=8192, embed_dim=64)
    codebook = SimVQModel(config).quantize.frozen_codebook
    assert codebook.std().item() == pytest.approx(64**-0.5, rel=0.03)
    assert codebook.mean().abs().item() < 0.01


def test_save_and_auto_load_give_bit_identical_tokens_and_reconstructions(model, images, tmp_path):
    with torch.no_grad():
        expected = model(images)
    model.save_pretrained(tmp_path)
    SimVQImageProcessor.from_image_size(32).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists() and not list(tmp_path.glob("*.bin"))

    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SimVQModel) and isinstance(
        AutoImageProcessor.from_pretrained(tmp_path), SimVQImageProcessor
    )
    assert AutoConfig.from_pretrained(tmp_path).quantizer_type == model.config.quantizer_type
    with torch.no_grad():
        actual = loaded(images)
    assert torch.equal(actual.image_tokens, expected.image_tokens)
    assert torch.equal(actual.reconstruction, expected.reconstruction)
    saved = load_file(tmp_path / "model.safetensors")
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(tensor, saved[name]), name


def test_from_pretrained_restores_the_frozen_codebook_exactly(tmp_path):
    model = SimVQModel(tiny_config())
    with torch.no_grad():
        model.quantize.frozen_codebook.mul_(7.0)  # far from any init distribution
    model.save_pretrained(tmp_path)
    loaded = SimVQModel.from_pretrained(tmp_path)
    assert torch.equal(loaded.quantize.frozen_codebook, model.quantize.frozen_codebook)


def test_trained_uniform_codebook_is_a_parameter_that_saves_and_loads_under_the_same_key(images, tmp_path):
    """The ablation C + W: `_init_weights` draws the uniform C (not the Gaussian), the optimizer sees it, and the
    folder restores it exactly, under the state-dict keys of the default model."""
    torch.manual_seed(0)
    model = SimVQModel(tiny_config(codebook_init="uniform", train_codebook=True)).eval()
    codebook = model.quantize.frozen_codebook
    assert codebook.abs().max().item() <= model.config.codebook_init_std * 3**0.5
    assert any(parameter is codebook for parameter in model.parameters())
    assert model.state_dict().keys() == SimVQModel(tiny_config()).state_dict().keys()
    with torch.no_grad():
        expected = model(images).image_tokens
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.quantize.frozen_codebook, torch.nn.Parameter)
    assert torch.equal(loaded.quantize.frozen_codebook, codebook)
    with torch.no_grad():
        assert torch.equal(loaded(images).image_tokens, expected)


@pytest.mark.parametrize("codebook_size", [1024, 65536, 262144])
def test_large_codebooks_encode_and_decode_on_cpu(codebook_size, images):
    torch.manual_seed(0)
    model = SimVQModel(tiny_config(codebook_size=codebook_size)).eval()
    with torch.no_grad():
        encoded = model.encode(images)
        reconstruction = model.decode_tokens(encoded.image_tokens)
        codebook = model.get_codebook()
    assert encoded.image_tokens.shape == (2, 8, 8) and encoded.image_tokens.dtype == torch.long
    assert reconstruction.shape == images.shape
    assert codebook.shape == (codebook_size, 16)
    flat = encoded.latents.permute(0, 2, 3, 1).reshape(-1, 16).double()
    nearest = torch.cdist(flat, codebook.double()).argmin(dim=1)
    assert torch.equal(encoded.image_tokens.flatten(), nearest)


def test_decoding_tokens_equals_decoding_quantized_latents(model, images):
    with torch.no_grad():
        encoded = model.encode(images)
        assert torch.equal(model.decode_tokens(encoded.image_tokens), model.decode(encoded.quantized))
        assert torch.equal(model(images).reconstruction, model.decode(encoded.quantized))


def test_one_training_step_changes_the_projection_but_never_the_frozen_codebook(images):
    model = SimVQModel(tiny_config()).train()
    frozen = model.quantize.frozen_codebook.clone()
    projection = model.quantize.projection.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    output = model(images)
    (output.reconstruction - images).abs().mean().add(output.quantization_loss).backward()
    optimizer.step()
    assert torch.equal(model.quantize.frozen_codebook, frozen)
    assert not torch.equal(model.quantize.projection.weight, projection)
    assert model.encoder.conv_in.weight.grad.abs().sum() > 0  # the straight-through path reached the encoder


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (torch.full((1, 8, 8), 256), "outside the codebook"),
        (torch.full((1, 8, 8), -1), "outside the codebook"),
        (torch.zeros(8, 8, dtype=torch.long), "batch, height, width"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.long), "batch, height, width"),
        (torch.zeros(1, 8, 8), "integer"),
    ],
)
def test_bad_token_maps_are_rejected(model, tokens, message):
    with pytest.raises(ValueError, match=message):
        model.decode_tokens(tokens)


@pytest.mark.parametrize("shape", [(2, 1, 32, 32), (3, 32, 32), (1, 3, 30, 32)])
def test_bad_pixel_values_are_rejected(model, shape):
    with pytest.raises(ValueError, match="pixel_values|multiples"):
        model.encode(torch.zeros(shape))


def test_saved_folder_loads_with_trust_remote_code_where_hf_simvq_is_not_installed(images, tmp_path):
    model = SimVQModel(tiny_config()).eval()
    model.save_pretrained(tmp_path)
    SimVQImageProcessor.from_image_size(32).save_pretrained(tmp_path)
    torch.save({"images": images}, tmp_path / "inputs.pt")
    with torch.no_grad():
        torch.save({"tokens": model.encode(images).image_tokens}, tmp_path / "expected.pt")
    script = f"""
        import torch
        from transformers import AutoImageProcessor, AutoModel

        folder = {str(tmp_path)!r}
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
        assert type(processor).__name__ == "SimVQImageProcessor"
        images = torch.load(folder + "/inputs.pt", weights_only=True)["images"]
        expected = torch.load(folder + "/expected.pt", weights_only=True)["tokens"]
        with torch.no_grad():
            assert torch.equal(model.encode(images).image_tokens, expected)
        print("remote-code-ok")
    """
    result = run_without_hf_simvq(script, tmp_path)
    assert "remote-code-ok" in result.stdout, result.stderr[-3000:]


def test_depth_to_space_is_dcr_ordered_not_pixel_shuffle():
    """Channel `(i·2 + j)·c + k` goes to pixel `(i, j)` of channel `k`, as the reference upsampler; CRD differs."""
    from hf_simvq.models.simvq.autoencoder import depth_to_space

    channels = 3
    x = torch.arange(4 * channels, dtype=torch.float32).view(1, 4 * channels, 1, 1)
    out = depth_to_space(x)
    assert out.shape == (1, channels, 2, 2)
    for k in range(channels):
        for i in range(2):
            for j in range(2):
                assert out[0, k, i, j] == (i * 2 + j) * channels + k
    assert not torch.equal(out, torch.nn.functional.pixel_shuffle(x, 2))


def test_decoder_has_the_reference_block_structure():
    """Per level `num_res_blocks` blocks (not + 1), indexed like the encoder's, an upsampler on all but the finest."""
    model = SimVQModel(tiny_config(num_res_blocks=2))
    decoder = model.decoder
    assert [len(stage.blocks) for stage in decoder.stages] == [2, 2, 2] and len(decoder.mid) == 2
    assert decoder.stages[0].upsample is None and all(stage.upsample is not None for stage in decoder.stages[1:])
    widths = [32 * m for m in model.config.channel_multipliers]
    assert [stage.blocks[-1].conv2.out_channels for stage in decoder.stages] == widths


def test_folder_of_the_earlier_decoder_is_refused_with_the_reason(tmp_path):
    """Folders saved with `num_res_blocks + 1` decoder blocks would load with a warning and decode wrongly."""
    from safetensors.torch import save_file

    model = SimVQModel(tiny_config())
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    extra = {
        k.replace(".blocks.0.", ".blocks.1."): v.clone()
        for k, v in weights.items()
        if "decoder.stages.0.blocks.0." in k
    }
    save_file({**weights, **extra}, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="earlier hf-simvq whose decoder had num_res_blocks \\+ 1 = 2 blocks"):
        AutoModel.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    loaded, info = SimVQModel.from_pretrained(tmp_path, output_loading_info=True)
    assert isinstance(loaded, SimVQModel) and not info["unexpected_keys"]
