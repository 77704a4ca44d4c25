"""Multi-scale residual SimVQ (`quantizer_type="multiscale_simvq"`) and VAR's tokenizer interface on `SimVQModel`."""

import json
import subprocess
import sys
from pathlib import Path

import PIL.Image
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config
from safetensors.torch import load_file
from transformers import AutoModel

from hf_simvq import SimVQConfig, SimVQModel
from hf_simvq.evaluation.codebook_statistics import scale_histograms, token_histogram
from hf_simvq.models.simvq.configuration_simvq import default_scales
from hf_simvq.models.simvq.multiscale_quantization import shared_phi_assignment

VAR_SCALES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]


@pytest.fixture
def multiscale_model() -> SimVQModel:
    torch.manual_seed(0)
    return SimVQModel(tiny_config(quantizer_type="multiscale_simvq")).eval()


def random_scale_indices(model: SimVQModel, batch: int = 2, seed: int = 1) -> list[torch.LongTensor]:
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randint(model.config.codebook_size, (batch, side * side), generator=generator)
        for side in model.config.scales
    ]


def reference_residual(model: SimVQModel, indices: torch.LongTensor, scale_index: int) -> torch.Tensor:
    """One scale's share of `f_hat`, written out from the definition: codes `C[ids]·Wᵀ + b`, bicubic to the latent
    size, then `(1 − r)·h + r·conv3×3(h)` with the refiner VAR's tick rule assigns to that scale."""
    quantize, config = model.quantize, model.config
    side, latent = config.scales[scale_index], config.latent_size
    codes = F.linear(quantize.frozen_codebook[indices], quantize.projection.weight, quantize.projection.bias)
    codes = codes.view(-1, side, side, config.embed_dim).permute(0, 3, 1, 2)
    if side != latent:
        codes = F.interpolate(codes, size=(latent, latent), mode="bicubic")
    phi = quantize.phi[shared_phi_assignment(len(config.scales), config.num_shared_phi)[scale_index]]
    ratio = config.quant_resi
    return (1 - ratio) * codes + ratio * F.conv2d(codes, phi.weight, phi.bias, padding=1)


def test_default_scales_are_vars_at_16_and_a_valid_progression_for_any_latent_size():
    assert SimVQConfig(quantizer_type="multiscale_simvq").scales == VAR_SCALES
    assert tiny_config(quantizer_type="multiscale_simvq").scales == [1, 2, 3, 4, 5, 6, 8]
    for latent_size in range(1, 65):
        scales = default_scales(latent_size)
        assert scales[0] == 1 and scales[-1] == latent_size
        assert all(coarser < finer for coarser, finer in zip(scales, scales[1:], strict=False))


def test_multiscale_config_round_trips(tmp_path):
    config = tiny_config(quantizer_type="multiscale_simvq", scales=[1, 2, 4, 8], quant_resi=0.25, num_shared_phi=2)
    config.save_pretrained(tmp_path)
    loaded = SimVQConfig.from_pretrained(tmp_path)
    assert (loaded.scales, loaded.quant_resi, loaded.num_shared_phi) == ([1, 2, 4, 8], 0.25, 2)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"scales": [1, 2, 4]}, "scales"),  # does not end at the 8×8 latent
        ({"scales": [1, 4, 3, 8]}, "scales"),  # not increasing
        ({"scales": [0, 8]}, "scales"),
        ({"quant_resi": 1.5}, "quant_resi"),
        ({"num_shared_phi": 0}, "num_shared_phi"),
    ],
)
def test_invalid_multiscale_values_raise_value_error_naming_the_field(overrides, field):
    with pytest.raises(ValueError, match=field):
        tiny_config(quantizer_type="multiscale_simvq", **overrides)


def test_refiners_are_shared_across_scales_as_in_var():
    # VAR's PhiPartiallyShared with 4 refiners over its 10 scales (scale 2 lies exactly between two ticks).
    assert shared_phi_assignment(10, 4) == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert shared_phi_assignment(10, 10) == list(range(10))
    assert shared_phi_assignment(10, 1) == [0] * 10


def test_sum_of_per_scale_residuals_reproduces_f_hat(multiscale_model, images):
    with torch.no_grad():
        encoded = multiscale_model.encode(images)
        scale_indices = multiscale_model.quantize.split_scales(encoded.image_tokens)
        expected = sum(reference_residual(multiscale_model, ids, si) for si, ids in enumerate(scale_indices))
    assert encoded.image_tokens.shape == (2, sum(side * side for side in multiscale_model.config.scales))
    torch.testing.assert_close(encoded.quantized, expected, rtol=0, atol=1e-5)


def test_idxBl_to_var_input_is_cumulative_f_hat_downsampled_to_the_next_scale(multiscale_model):
    scales = multiscale_model.config.scales
    scale_indices = random_scale_indices(multiscale_model)
    with torch.no_grad():
        var_input = multiscale_model.idxBl_to_var_input(scale_indices)
        f_hat, expected = 0, []
        for si, ids in enumerate(scale_indices[:-1]):
            f_hat = f_hat + reference_residual(multiscale_model, ids, si)
            next_side = scales[si + 1]
            expected.append(F.adaptive_avg_pool2d(f_hat, next_side).flatten(2).transpose(1, 2))
    total = sum(side * side for side in scales)
    assert var_input.shape == (2, total - 1, multiscale_model.config.embed_dim)
    torch.testing.assert_close(var_input, torch.cat(expected, dim=1), rtol=0, atol=1e-5)


def test_autoregressive_steps_rebuild_the_teacher_forcing_input_and_f_hat(multiscale_model):
    """VAR's sampling loop, fed the ground-truth codes, must see exactly what teacher forcing showed in training."""
    quantize, scales = multiscale_model.quantize, multiscale_model.config.scales
    scale_indices = random_scale_indices(multiscale_model)
    with torch.no_grad():
        var_input = multiscale_model.idxBl_to_var_input(scale_indices)
        f_hat = torch.zeros(2, multiscale_model.config.embed_dim, scales[-1], scales[-1])
        next_inputs = []
        for si, ids in enumerate(scale_indices):
            h = quantize.embedding(ids).transpose(1, 2).reshape(2, -1, scales[si], scales[si])
            returned, next_input = multiscale_model.get_next_autoregressive_input(si, len(scales), f_hat, h)
            assert returned is f_hat  # in place, as VAR
            next_inputs.append(next_input.flatten(2).transpose(1, 2))
        expected_f_hat = quantize.f_hat_per_scale(scale_indices)[-1]
    torch.testing.assert_close(torch.cat(next_inputs[:-1], dim=1), var_input, rtol=0, atol=1e-5)
    torch.testing.assert_close(f_hat, expected_f_hat, rtol=0, atol=1e-5)


class VARStandIn(torch.nn.Module):
    """What FoundationVision/VAR's `models/var.py` and `trainer.py` touch on their tokenizer, under VAR's own names:
    `vae_local.Cvae`, `.vocab_size`, `.quantize`, `.img_to_idxBl`, `.fhat_to_img`; `quantize.embedding` (called and
    its `.weight`), `.idxBl_to_var_input`, `.get_next_autoregressive_input`, `.prog_si`. (VAR's real `VAR` class ran
    on a hf-simvq tokenizer with these; it is not a dependency of the tests.)"""

    def __init__(self, vae_local: SimVQModel, patch_nums: list[int]):
        super().__init__()
        self.Cvae, self.V = vae_local.Cvae, vae_local.vocab_size
        self.patch_nums = patch_nums
        self.vae_proxy, self.vae_quant_proxy = (vae_local,), (vae_local.quantize,)
        self.word_embed = torch.nn.Linear(self.Cvae, 16)
        self.head = torch.nn.Linear(16, self.V)

    def train_step_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """trainer.py: ids by scale, the teacher-forcing input, logits over `vocab_size`."""
        vae = self.vae_proxy[0]
        gt_idx_Bl = vae.img_to_idxBl(images)
        x_BLCv_wo_first_l = vae.quantize.idxBl_to_var_input(gt_idx_Bl)
        first = torch.zeros(images.shape[0], self.patch_nums[0] ** 2, 16)
        logits = self.head(torch.cat([first, self.word_embed(x_BLCv_wo_first_l)], dim=1))
        return logits, torch.cat(gt_idx_Bl, dim=1)

    def sample_from_ids(self, scale_indices: list[torch.Tensor]) -> torch.Tensor:
        """autoregressive_infer_cfg with the sampled ids given: codes from `embedding`, `f_hat` grown in place,
        images from `fhat_to_img`, de-normalised to [0, 1] in place as VAR does."""
        quant = self.vae_quant_proxy[0]
        B, last = scale_indices[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.Cvae, last, last)
        for si, pn in enumerate(self.patch_nums):
            one_hot = F.one_hot(scale_indices[si], self.V).float()
            h_BChw = (one_hot @ quant.embedding.weight.unsqueeze(0)).transpose_(1, 2).reshape(B, self.Cvae, pn, pn)
            assert torch.equal(h_BChw, quant.embedding(scale_indices[si]).transpose(1, 2).reshape(B, self.Cvae, pn, pn))
            f_hat, _ = quant.get_next_autoregressive_input(si, len(self.patch_nums), f_hat, h_BChw)
        return self.vae_proxy[0].fhat_to_img(f_hat).add_(1).mul_(0.5)


def test_vars_own_names_drive_training_and_sampling(multiscale_model, images):
    model, config = multiscale_model, multiscale_model.config
    var = VARStandIn(model, config.scales)
    assert (var.Cvae, var.V) == (config.embed_dim, config.codebook_size)
    logits, gt_BL = var.train_step_logits(images)
    assert logits.shape == (images.shape[0], model.quantize.sequence_length, config.codebook_size)
    assert torch.equal(gt_BL, model.encode(images).image_tokens)
    with torch.no_grad():
        scale_indices = model.img_to_idxBl(images)
        sampled = var.sample_from_ids(scale_indices)
        decoded = model.idxBl_to_img(scale_indices, same_shape=True, last_one=True)
    torch.testing.assert_close(sampled, (decoded + 1) / 2, rtol=0, atol=1e-5)
    assert sampled.min() >= 0 and sampled.max() <= 1


@pytest.mark.parametrize("prog_si", [0, 1, 2])
def test_progressive_training_keeps_the_first_scales_as_var(multiscale_model, images, prog_si):
    """VAR's trainer sets `quantize.prog_si`: ids of scales 0 … prog_si, and teacher-forcing input for 1 … prog_si."""
    model, scales = multiscale_model, multiscale_model.config.scales
    with torch.no_grad():
        all_ids = model.img_to_idxBl(images)
        full_input = model.quantize.idxBl_to_var_input(all_ids)
        model.quantize.prog_si = prog_si
        ids = model.img_to_idxBl(images)
        var_input = model.quantize.idxBl_to_var_input(all_ids)
        model.quantize.prog_si = -1
    assert len(ids) == prog_si + 1 and all(torch.equal(a, b) for a, b in zip(ids, all_ids, strict=False))
    kept = sum(side * side for side in scales[1 : prog_si + 1])
    assert var_input.shape == (images.shape[0], kept, model.config.embed_dim)
    torch.testing.assert_close(var_input, full_input[:, :kept], rtol=0, atol=0)


def test_indices_to_image_round_trip_equals_the_reconstruction(multiscale_model, images):
    with torch.no_grad():
        reconstruction = multiscale_model(images).reconstruction
        scale_indices = multiscale_model.img_to_idxBl(images)
        image = multiscale_model.idxBl_to_img(scale_indices, same_shape=True, last_one=True)
        per_scale = multiscale_model.idxBl_to_img(scale_indices, same_shape=True)
        growing = multiscale_model.idxBl_to_img(scale_indices, same_shape=False)
        decoded_tokens = multiscale_model.decode_tokens(torch.cat(scale_indices, dim=1))
    assert [ids.shape for ids in scale_indices] == [(2, side * side) for side in multiscale_model.config.scales]
    assert torch.equal(image, reconstruction.clamp(-1, 1))
    assert torch.equal(decoded_tokens, reconstruction)
    assert len(per_scale) == len(scale_indices) and torch.equal(per_scale[-1], image)
    factor = multiscale_model.config.downsample_factor
    assert [tuple(img.shape[-2:]) for img in growing] == [
        (s * factor, s * factor) for s in multiscale_model.config.scales
    ]


def test_per_scale_histograms_count_each_scale_separately(multiscale_model, images):
    with torch.no_grad():
        tokens = multiscale_model.encode(images).image_tokens
    histograms = scale_histograms(multiscale_model.quantize, tokens)
    scales = multiscale_model.config.scales
    assert histograms.shape == (len(scales), multiscale_model.config.codebook_size)
    assert histograms.sum(dim=1).tolist() == [2 * side * side for side in scales]
    for row, ids in zip(histograms, multiscale_model.img_to_idxBl(images), strict=True):
        assert torch.equal(row, token_histogram(ids, multiscale_model.config.codebook_size))
    assert torch.equal(histograms.sum(dim=0), token_histogram(tokens, multiscale_model.config.codebook_size))


def test_save_and_auto_load_give_identical_indices(multiscale_model, images, tmp_path):
    with torch.no_grad():
        multiscale_model.quantize.frozen_codebook.mul_(3.0)  # a codebook no init would reproduce
        expected = multiscale_model.img_to_idxBl(images)
    multiscale_model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert "quantize.frozen_codebook" in saved and not any("embedding" in name for name in saved)
    assert (tmp_path / "multiscale_quantization.py").exists()  # copied for trust_remote_code loading

    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SimVQModel) and loaded.config.scales == multiscale_model.config.scales
    actual = loaded.img_to_idxBl(images)
    assert all(torch.equal(a, e) for a, e in zip(actual, expected, strict=True))
    assert torch.equal(loaded.quantize.frozen_codebook, multiscale_model.quantize.frozen_codebook)
    assert torch.equal(loaded.quantize.embedding.weight, multiscale_model.quantize.embedding.weight)


def test_embedding_is_the_effective_codebook_and_follows_an_optimizer_step(images):
    torch.manual_seed(0)
    model = SimVQModel(tiny_config(quantizer_type="multiscale_simvq")).train()
    embedding = model.quantize.embedding
    assert isinstance(embedding, torch.nn.Embedding) and not embedding.weight.requires_grad
    torch.testing.assert_close(embedding.weight, model.get_codebook().detach(), rtol=0, atol=0)
    assert all(parameter is not embedding.weight for parameter in model.parameters())
    assert not any("embedding" in name for name in model.state_dict())

    frozen_before, weight_before = model.quantize.frozen_codebook.clone(), embedding.weight.clone()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    encoded = model.encode(images)
    (model.decode(encoded.quantized).sub(images).abs().mean() + encoded.quantization_loss).backward()
    assert model.quantize.phi[0].weight.grad is not None and model.quantize.projection.weight.grad is not None
    optimizer.step()

    refreshed = model.quantize.embedding.weight
    assert not torch.equal(refreshed, weight_before)
    torch.testing.assert_close(refreshed, model.get_codebook().detach(), rtol=0, atol=0)
    assert torch.equal(model.quantize.frozen_codebook, frozen_before)


@pytest.mark.parametrize("quantizer_type", ["simvq", "vq"])
def test_var_interface_on_a_single_scale_model_raises_a_clear_error(quantizer_type, images):
    model = SimVQModel(tiny_config(quantizer_type=quantizer_type))
    with pytest.raises(ValueError, match="multiscale_simvq"):
        model.img_to_idxBl(images)


def test_bad_multiscale_inputs_are_rejected(multiscale_model):
    with pytest.raises(ValueError, match=r"\(batch, 155\)"):
        multiscale_model.decode_tokens(torch.zeros(2, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="image_size"):
        multiscale_model.encode(torch.zeros(1, 3, 16, 16))
    scale_indices = random_scale_indices(multiscale_model)
    scale_indices[1] = scale_indices[1][:, :3]
    with pytest.raises(ValueError, match="2×2 scale"):
        multiscale_model.idxBl_to_var_input(scale_indices)
    with pytest.raises(ValueError, match="codebook"):
        multiscale_model.idxBl_to_img([torch.full((1, 1), 10_000)], same_shape=True)


def test_var_demo_trains_samples_and_reports_end_to_end(tmp_path):
    torch.manual_seed(0)
    tokenizer_config = tiny_config(
        quantizer_type="multiscale_simvq", base_channels=8, norm_num_groups=8, embed_dim=8, codebook_size=64
    )
    SimVQModel(tokenizer_config).save_pretrained(tmp_path / "tokenizer")
    script = Path(__file__).parents[1] / "training" / "train_var.py"
    toy = "--num_train_images 64 --hidden_size 32 --num_layers 1 --num_heads 2 --train_batch_size 16"
    command = [sys.executable, str(script), "--tokenizer", str(tmp_path / "tokenizer"), "--output_dir", str(tmp_path)]
    command += [*toy.split(), "--max_train_steps", "3", "--logging_steps", "3", "--samples_per_class", "2"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    scales = tokenizer_config.scales
    assert 0 < metrics["final_loss"] < 2 * metrics["uniform_loss"]
    assert list(metrics["per_scale_loss"]) == [str(side) for side in scales]
    for key, num_images in (("data_per_scale_usage", 64), ("sample_per_scale_usage", 2 * len(metrics["classes"]))):
        usages = metrics[key]
        assert [usage["scale"] for usage in usages] == scales
        assert all(
            1 <= usage["used_codes"] <= min(64, num_images * side * side)
            for usage, side in zip(usages, scales, strict=True)
        )
    with PIL.Image.open(tmp_path / "samples.png") as grid:
        assert grid.size == (2 * 32, len(metrics["classes"]) * 32)
