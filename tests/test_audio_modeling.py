"""SimVQAudioModel: save/reload, remote code, the codes ↔ waveform round trip, large codebooks, training, bad input."""

import pytest
import torch
from conftest import run_without_hf_simvq, tiny_audio_config
from safetensors.torch import load_file
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioTokenization

from hf_simvq import SimVQAudioConfig, SimVQAudioFeatureExtractor, SimVQAudioModel


@pytest.fixture
def audio() -> torch.Tensor:
    """Two 200-sample clips (25 frames of the tiny hop of 8): a chirp with noise, like speech's moving spectrum."""
    t = torch.arange(200) / 24000
    noise = torch.randn(2, 1, 200, generator=torch.Generator().manual_seed(0))
    return 0.5 * torch.sin(2 * torch.pi * 3000 * t * (1 + 50 * t)) + 0.1 * noise


@pytest.fixture
def model() -> SimVQAudioModel:
    torch.manual_seed(0)
    return SimVQAudioModel(tiny_audio_config()).eval()


def test_default_config_is_the_authors_libritts_24khz_model():
    config = SimVQAudioConfig()
    assert (config.sampling_rate, config.hop_length, config.frame_rate) == (24000, 320, 75)
    assert config.use_causal_conv and config.upsampling_ratios == [8, 5, 4, 2] and config.embed_dim == 512
    assert (config.decoder_hidden_size, config.decoder_intermediate_size, config.decoder_num_layers) == (768, 2304, 12)
    assert config.n_fft == 1280 and config.codebook_init_std == pytest.approx(512**-0.5)


def test_fresh_codebook_is_the_papers_gaussian_not_the_generic_init():
    codebook = SimVQAudioModel(tiny_audio_config(codebook_size=8192)).quantize.frozen_codebook
    assert codebook.std().item() == pytest.approx(16**-0.5, rel=0.03)
    assert codebook.mean().abs().item() < 0.01


def test_save_and_auto_reload_are_bit_identical(model, audio, tmp_path):
    with torch.no_grad():
        model.quantize.frozen_codebook.mul_(3.0)  # far from any init distribution: from_pretrained must not re-draw C
        expected = model(audio)
    model.save_pretrained(tmp_path)
    SimVQAudioFeatureExtractor(hop_length=8).save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "simvq_audio"
    assert isinstance(AutoFeatureExtractor.from_pretrained(tmp_path), SimVQAudioFeatureExtractor)
    saved = load_file(tmp_path / "model.safetensors")
    for auto_class in (AutoModel, AutoModelForAudioTokenization):
        loaded = auto_class.from_pretrained(tmp_path).eval()
        assert isinstance(loaded, SimVQAudioModel)
        with torch.no_grad():
            actual = loaded(audio)
        assert torch.equal(actual.audio_codes, expected.audio_codes)
        assert torch.equal(actual.audio_values, expected.audio_values)
        for name, tensor in loaded.state_dict().items():
            assert torch.equal(tensor, saved[name]), name


def test_saved_folder_loads_with_trust_remote_code_where_hf_simvq_is_not_installed(model, audio, tmp_path):
    model.save_pretrained(tmp_path)
    SimVQAudioFeatureExtractor(hop_length=8).save_pretrained(tmp_path)
    with torch.no_grad():
        torch.save({"audio": audio, "codes": model.encode(audio).audio_codes}, tmp_path / "expected.pt")
    script = f"""
        import torch
        from transformers import AutoFeatureExtractor, AutoModel, AutoModelForAudioTokenization

        folder = {str(tmp_path)!r}
        expected = torch.load(folder + "/expected.pt", weights_only=True)
        for auto_class in (AutoModel, AutoModelForAudioTokenization):
            model = auto_class.from_pretrained(folder, trust_remote_code=True).eval()
            assert type(model).__module__.startswith("transformers_modules"), type(model).__module__
            with torch.no_grad():
                assert torch.equal(model.encode(expected["audio"]).audio_codes, expected["codes"])
        extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        assert type(extractor).__name__ == "SimVQAudioFeatureExtractor" and extractor.hop_length == 8
        print("remote-code-ok")
    """
    result = run_without_hf_simvq(script, tmp_path)
    assert "remote-code-ok" in result.stdout, result.stderr[-3000:]


def test_encode_gives_one_code_stream_at_the_frame_rate(model, audio):
    with torch.no_grad():
        encoded = model.encode(audio[..., :197])  # not a multiple of the hop: the encoder pads the last frame
        decoded = model.decode(encoded.audio_codes).audio_values
    assert encoded.audio_codes.shape == (2, 1, 25) and encoded.audio_codes.dtype == torch.long
    assert encoded.latents.shape == encoded.quantized.shape == (2, 16, 25)
    assert decoded.shape == (2, 25 * 8)


def test_decoding_codes_equals_decoding_the_quantized_latents(model, audio):
    with torch.no_grad():
        encoded = model.encode(audio)
        from_latents = model.decode_latents(encoded.quantized)
        assert torch.equal(model.decode(encoded.audio_codes).audio_values, from_latents)
        assert torch.equal(model(audio).audio_values, from_latents[..., : audio.shape[-1]])


@pytest.mark.parametrize("codebook_size", [4096, 262144])
def test_large_codebooks_search_exactly_on_cpu(codebook_size, audio):
    torch.manual_seed(0)
    model = SimVQAudioModel(tiny_audio_config(codebook_size=codebook_size)).eval()
    # An untrained encoder maps every frame near one point; latents spread like the codebook reach many codes.
    latents = torch.randn(2, 16, 600, generator=torch.Generator().manual_seed(1)) * 16**-0.5
    with torch.no_grad():
        codes = model.quantize(latents).indices
        decoded = model.decode(codes[:, None]).audio_values
        encoded = model.encode(audio)
        codebook = model.get_codebook().double()
    assert codes.shape == (2, 600) and decoded.shape == (2, 600 * 8)
    for found, queries in ((codes, latents), (encoded.audio_codes, encoded.latents)):
        nearest = torch.cdist(queries.movedim(1, -1).reshape(-1, 16).double(), codebook).argmin(dim=1)  # full N × K
        assert torch.equal(found.flatten(), nearest)
    assert codes.unique().numel() > 500  # the search really chooses among many codes


def test_one_training_step_changes_the_projection_but_never_the_frozen_codebook(audio):
    torch.manual_seed(0)
    model = SimVQAudioModel(tiny_audio_config()).train()
    frozen = model.quantize.frozen_codebook.clone()
    projection = model.quantize.projection.weight.detach().clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    output = model(audio)
    ((output.audio_values - audio[:, 0]).abs().mean() + output.quantization_loss).backward()
    optimizer.step()
    assert torch.equal(model.quantize.frozen_codebook, frozen)
    assert not torch.equal(model.quantize.projection.weight, projection)
    first_conv = model.encoder.layers[0].conv.parametrizations.weight.original1
    assert first_conv.grad.abs().sum() > 0  # the straight-through path reached the encoder


def test_right_padding_leaves_the_codes_of_real_frames_alone(model, audio):
    """The encoder is causal: a frame's code sees only samples up to its end, so padding after it cannot move it."""
    extractor = SimVQAudioFeatureExtractor(hop_length=8)
    short, long = audio[0, 0, :83].numpy(), audio[1, 0].numpy()
    batch = extractor([short, long], sampling_rate=24000, return_tensors="pt")
    alone = extractor(short, sampling_rate=24000, return_tensors="pt")
    with torch.no_grad():
        batched = model.encode(batch["input_values"], padding_mask=batch["padding_mask"])
        single = model.encode(alone["input_values"]).audio_codes
    assert batched.audio_codes_mask.tolist() == [[[1] * 11 + [0] * 14], [[1] * 25]]  # ceil(83 / 8) = 11 frames
    assert torch.equal(batched.audio_codes[:1, :, :10], single[..., :10])


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        (torch.full((1, 1, 5), 64), "outside the codebook"),
        (torch.full((1, 1, 5), -1), "outside the codebook"),
        (torch.zeros(1, 5, dtype=torch.long), r"\(batch, 1, frames\)"),
        (torch.zeros(1, 2, 5, dtype=torch.long), r"\(batch, 1, frames\)"),
        (torch.zeros(1, 1, 0, dtype=torch.long), "empty"),
        (torch.zeros(1, 1, 5), "integer"),
    ],
)
def test_bad_codes_are_rejected(model, codes, message):
    with pytest.raises(ValueError, match=message):
        model.decode(codes)


@pytest.mark.parametrize(
    ("values", "padding_mask", "message"),
    [
        (torch.zeros(2, 200), None, r"\(batch, 1, samples\)"),
        (torch.zeros(2, 2, 200), None, r"\(batch, 1, samples\)"),
        (torch.zeros(1, 1, 0), None, "empty"),
        (torch.tensor([[[0.1, float("nan"), 0.2]]]), None, "NaN or infinite"),
        (torch.tensor([[[0.1, float("inf"), 0.2]]]), None, "NaN or infinite"),
        (torch.zeros(2, 1, 200), torch.ones(2, 100), "padding_mask must have shape"),
    ],
)
def test_bad_audio_is_rejected(model, values, padding_mask, message):
    with pytest.raises(ValueError, match=message):
        model.encode(values, padding_mask=padding_mask)


def test_bad_quantized_latents_are_rejected(model):
    with pytest.raises(ValueError, match="decode codes, use decode"):
        model.decode_latents(torch.zeros(1, 8, 5))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"codebook_dim": 32}, "codebook_dim"),
        ({"adanorm_num_embeddings": 4}, "adanorm_num_embeddings"),
        ({"audio_channels": 2}, "mono"),
        ({"codebook_size": 1}, "codebook_size"),
        ({"upsampling_ratios": []}, "upsampling_ratios"),
    ],
)
def test_bad_configs_are_rejected(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_audio_config(**overrides)
