"""hf-simvq-convert on synthetic checkpoints in the key layout of the authors' audio model (taming.models.vq_audio)."""

import re

import pytest
import torch
from conftest import tiny_audio_config
from transformers import AutoFeatureExtractor, AutoModel

import hf_simvq  # noqa: F401  (registers the Auto classes)
from hf_simvq import SimVQAudioFeatureExtractor, SimVQAudioModel
from hf_simvq.models.simvq.convert_original_checkpoint import convert_original_checkpoint

# Our state-dict names → the authors' (written from their modules: SConv1d wraps NormConv1d wraps a weight-normed
# Conv1d; VocosBackbone's norms are plain LayerNorms; ISTFTHead's projection is `out`).
TO_AUTHORS = (
    (r"^encoder\.layers\.", "encoder.model."),
    (r"\.conv\.parametrizations\.weight\.original0$", ".conv.conv.weight_g"),
    (r"\.conv\.parametrizations\.weight\.original1$", ".conv.conv.weight_v"),
    (r"^(encoder\..*)\.conv\.bias$", r"\1.conv.conv.bias"),
    (r"^quantize\.frozen_codebook$", "quantize.embedding.weight"),
    (r"^quantize\.projection\.", "quantize.embedding_proj."),
    (r"\.norm\.scale\.weight$", ".norm.weight"),
    (r"\.norm\.shift\.weight$", ".norm.bias"),
    (r"^head\.linear\.", "head.out."),
)


def authors_checkpoint(model: SimVQAudioModel, ema_scale: float = 1.5) -> dict:
    """`model`'s weights in the authors' Lightning layout, with LitEma copies (`ema_scale` × the raw weights) of
    every trained tensor, the unused SEANet decoder, the persistent ISTFT window and discriminator tensors."""
    raw = {}
    for name, tensor in model.state_dict().items():
        for pattern, replacement in TO_AUTHORS:
            name = re.sub(pattern, replacement, name)
        raw[name] = tensor[0] if name.endswith((".norm.weight", ".norm.bias")) and tensor.ndim == 2 else tensor
    raw |= {"decoder.model.0.conv.conv.weight_v": torch.randn(8, 16, 7), "head.istft.window": torch.hann_window(32)}
    ema = {f"model_ema.{name.replace('.', '')}": tensor * ema_scale for name, tensor in raw.items()}
    ema.pop("model_ema.quantizeembeddingweight")  # frozen: LitEma copies trainable parameters only
    ema.pop("model_ema.headistftwindow")  # a buffer
    return {"state_dict": {**raw, **ema, "loss.discriminator.weight": torch.ones(3)}}


@pytest.mark.parametrize("use_ema", [True, False])
def test_audio_checkpoint_converts_and_reloads_with_auto_classes(tmp_path, use_ema):
    torch.manual_seed(0)
    source = SimVQAudioModel(tiny_audio_config(decoder_attention_num_groups=32)).eval()  # the authors' GroupNorm(32)
    torch.save(authors_checkpoint(source), tmp_path / "audio.ckpt")
    convert_original_checkpoint(tmp_path / "audio.ckpt", tmp_path / "out", use_ema=use_ema)

    converted = AutoModel.from_pretrained(tmp_path / "out").eval()
    assert isinstance(converted, SimVQAudioModel)
    for field, value in source.config.to_diff_dict().items():  # every field, read off the shapes
        assert getattr(converted.config, field) == value, field
    extractor = AutoFeatureExtractor.from_pretrained(tmp_path / "out")
    assert isinstance(extractor, SimVQAudioFeatureExtractor) and extractor.hop_length == 8
    for name, tensor in source.state_dict().items():
        expected = tensor if not use_ema or name == "quantize.frozen_codebook" else tensor * 1.5
        assert torch.equal(converted.state_dict()[name], expected), name


def test_a_head_with_another_fft_size_is_refused(tmp_path):
    checkpoint = authors_checkpoint(SimVQAudioModel(tiny_audio_config()))
    for prefix in ("", "model_ema."):
        key = prefix + ("head.out.weight" if not prefix else "headoutweight")
        checkpoint["state_dict"][key] = torch.zeros(50, 32)
    torch.save(checkpoint, tmp_path / "audio.ckpt")
    with pytest.raises(ValueError, match="n_fft = 4 × hop"):
        convert_original_checkpoint(tmp_path / "audio.ckpt", tmp_path / "out")
