"""The reused WavTokenizer blocks: SimVQAudioModel is transformers' WavTokenizerModel with codebook `C·Wᵀ + b`.

SimVQAudioModel builds its SEANet encoder, Vocos backbone and ISTFT head from transformers' WavTokenizer classes.
Here a real `WavTokenizerModel`, given the same sizes, our weights and our effective codebook as its k-means
codebook, must encode to the same latents and codes and decode the same codes to the same waveform: the only
difference between the two models is what the codebook is made of.
"""

import torch
from conftest import tiny_audio_config
from transformers import WavTokenizerConfig, WavTokenizerModel

from hf_simvq import SimVQAudioModel


def wavtokenizer_twin(model: SimVQAudioModel) -> WavTokenizerModel:
    """A WavTokenizerModel of the same sizes holding `model`'s weights, its VQ codebook set to `C·Wᵀ + b`."""
    shared = WavTokenizerConfig.__dataclass_fields__
    fields = {name: value for name, value in model.config.to_dict().items() if name in shared}
    twin = WavTokenizerModel(WavTokenizerConfig(**fields)).eval()
    twin.encoder_model.encoder.load_state_dict(model.encoder.state_dict())
    twin.backbone.load_state_dict(model.backbone.state_dict())
    twin.head.load_state_dict(model.head.state_dict())
    with torch.no_grad():
        twin.encoder_model.quantizer.codebook.embed.copy_(model.get_codebook())
    return twin


def test_simvq_audio_is_wavtokenizer_with_the_effective_codebook():
    torch.manual_seed(0)
    model = SimVQAudioModel(tiny_audio_config()).eval()
    with torch.no_grad():  # spread the codebook so the frames of this untrained encoder reach several codes
        model.quantize.projection.weight.mul_(0.05)
    twin = wavtokenizer_twin(model)
    audio = torch.randn(2, 1, 203, generator=torch.Generator().manual_seed(0)) * 0.3
    with torch.no_grad():
        ours = model.encode(audio)
        assert torch.equal(ours.latents, twin.encoder_model.encoder(audio))
        theirs = twin.encode(audio).audio_codes
        assert torch.equal(ours.audio_codes, theirs) and theirs.unique().numel() > 1
        our_audio = model.decode(ours.audio_codes).audio_values
        their_audio = twin.decode(theirs).audio_values
    assert their_audio.shape == (2, 1, our_audio.shape[-1])
    # Same blocks; the code vectors differ only in rounding (`W·c + b` per gathered row vs rows of `C·Wᵀ + b`).
    torch.testing.assert_close(our_audio, their_audio[:, 0], rtol=1e-5, atol=1e-6)


def test_the_backbone_norms_are_plain_layer_norms():
    """One AdaLN row is the authors' non-adaptive `LayerNorm`: the same function of its input as nn.LayerNorm."""
    torch.manual_seed(0)
    model = SimVQAudioModel(tiny_audio_config()).eval()
    norm = model.backbone.convnext[0].norm
    with torch.no_grad():
        norm.scale.weight.normal_()
        norm.shift.weight.normal_()
    plain = torch.nn.LayerNorm(32, eps=model.config.norm_eps)
    with torch.no_grad():
        plain.weight.copy_(norm.scale.weight[0])
        plain.bias.copy_(norm.shift.weight[0])
    hidden = torch.randn(2, 7, 32)
    torch.testing.assert_close(norm(hidden, torch.zeros(1, dtype=torch.long)), plain(hidden), rtol=1e-5, atol=1e-6)
