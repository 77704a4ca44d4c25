import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hf_simvq import SimVQQuantizer, VQQuantizer, nearest_code_indices


def full_matrix_nearest(vectors: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The reference: every distance at once, in float64; argmin keeps the first (lowest) index on ties."""
    distances = torch.cdist(vectors.double(), codebook.double()).pow(2)
    return distances.argmin(dim=1)


class LargestTensorSeen(TorchDispatchMode):
    """Records the element count of the largest tensor any operation produces while active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor):
                self.largest = max(self.largest, tensor.numel())
        return out


@pytest.mark.parametrize(
    ("num_vectors", "num_codes", "token_block", "code_block"),
    [
        (500, 1000, 1024, 4096),  # one tile
        (1000, 3000, 128, 512),  # many tiles, exact multiples
        (777, 2049, 100, 300),  # ragged last tiles on both axes
    ],
)
def test_search_matches_full_matrix_reference(num_vectors, num_codes, token_block, code_block):
    generator = torch.Generator().manual_seed(num_codes)
    vectors = torch.randn(num_vectors, 32, generator=generator)
    codebook = torch.randn(num_codes, 32, generator=generator)
    indices = nearest_code_indices(vectors, codebook, token_block=token_block, code_block=code_block)
    assert torch.equal(indices, full_matrix_nearest(vectors, codebook))


def test_ties_and_duplicated_codes_go_to_the_lowest_index():
    # Small integers: every distance is exact in fp32, so ties are real ties.
    generator = torch.Generator().manual_seed(0)
    base = torch.randint(-3, 4, (40, 8), generator=generator).float()
    codebook = torch.cat([base, base, base[:17]])  # every code duplicated, across tile boundaries
    vectors = torch.cat([base, torch.randint(-3, 4, (200, 8), generator=generator).float()])
    indices = nearest_code_indices(vectors, codebook, token_block=64, code_block=16)
    reference = full_matrix_nearest(vectors, codebook)
    assert torch.equal(indices, reference)
    assert torch.equal(indices[:40], torch.arange(40))  # exact matches pick the first copy
    assert int(indices.max()) < 40


def test_search_never_builds_the_tokens_by_codes_matrix():
    vectors, codebook = torch.randn(2048, 16), torch.randn(65536, 16)
    with LargestTensorSeen() as seen:
        indices = nearest_code_indices(vectors, codebook, token_block=256, code_block=1024)
    assert seen.largest <= max(256 * 1024, codebook.numel())
    assert seen.largest < vectors.shape[0] * codebook.shape[0] / 100
    assert torch.equal(indices, full_matrix_nearest(vectors, codebook))


@pytest.mark.parametrize("quantizer_class", [SimVQQuantizer, VQQuantizer])
def test_search_stays_exact_under_bf16_autocast(quantizer_class):
    torch.manual_seed(0)
    quantizer = quantizer_class(4096, 32)
    latents = torch.randn(4, 32, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # first call inside autocast: the cached codebook too
        indices = quantizer(latents).indices
    with torch.no_grad():
        reference = full_matrix_nearest(latents.permute(0, 2, 3, 1).reshape(-1, 32), quantizer.codebook().float())
    assert torch.equal(indices.flatten(), reference)


@pytest.mark.parametrize("quantizer_class", [SimVQQuantizer, VQQuantizer])
def test_forward_picks_nearest_effective_code_and_reports_the_reference_loss(quantizer_class):
    torch.manual_seed(0)
    quantizer = quantizer_class(512, 8, commitment_beta=0.25)
    latents = torch.randn(2, 8, 4, 4, requires_grad=True)
    output = quantizer(latents)
    flat = latents.detach().permute(0, 2, 3, 1).reshape(-1, 8)
    codebook = quantizer.codebook().detach()
    assert torch.equal(output.indices.flatten(), full_matrix_nearest(flat, codebook))
    codes = codebook[output.indices].permute(0, 3, 1, 2)
    torch.testing.assert_close(output.quantized, codes)
    expected = 1.25 * (latents.detach() - codes).pow(2).mean()  # β·‖z−sg(q)‖² + ‖sg(z)−q‖², equal in value
    torch.testing.assert_close(output.loss, expected)
    # straight-through: the decoder's gradient reaches the encoder unchanged
    (output.quantized * 3).sum().backward()
    torch.testing.assert_close(latents.grad, torch.full_like(latents, 3.0))


def test_simvq_step_trains_the_projection_and_never_the_frozen_codebook():
    torch.manual_seed(0)
    quantizer = SimVQQuantizer(1024, 16)
    frozen, weight = quantizer.frozen_codebook.clone(), quantizer.projection.weight.detach().clone()
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=1e-2)
    assert all(p is not quantizer.frozen_codebook for p in quantizer.parameters())
    quantizer(torch.randn(2, 16, 4, 4)).loss.backward()
    optimizer.step()
    assert torch.equal(quantizer.frozen_codebook, frozen)
    assert not torch.allclose(quantizer.projection.weight, weight)
    assert "frozen_codebook" in quantizer.state_dict()


@pytest.mark.parametrize("train_codebook", [False, True])
def test_train_codebook_decides_whether_a_step_moves_the_codebook_c(train_codebook):
    """The ablation trains `C` with `W`: a gradient reaches exactly the selected rows, and Adam moves only those."""
    torch.manual_seed(0)
    quantizer = SimVQQuantizer(1024, 16, train_codebook=train_codebook)
    before = quantizer.frozen_codebook.detach().clone()
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=1e-2)
    output = quantizer(torch.randn(2, 16, 4, 4))
    output.loss.backward()
    optimizer.step()
    codebook = quantizer.frozen_codebook
    assert set(quantizer.state_dict()) == {"frozen_codebook", "projection.weight", "projection.bias"}
    if not train_codebook:
        assert not codebook.requires_grad and codebook.grad is None
        assert torch.equal(codebook, before)
        return
    selected = torch.zeros(1024, dtype=torch.bool)
    selected[output.indices.flatten()] = True
    assert torch.equal((codebook.grad != 0).any(dim=1), selected)
    assert torch.equal((codebook != before).any(dim=1), selected)


def initial_codes(quantizer) -> torch.Tensor:
    """The tensor the codebook init fills: SimVQ's `C`, VQ's learned codebook."""
    return (quantizer.frozen_codebook if isinstance(quantizer, SimVQQuantizer) else quantizer.embedding.weight).detach()


@pytest.mark.parametrize("quantizer_class", [SimVQQuantizer, VQQuantizer])
def test_uniform_init_has_the_normal_inits_std_inside_its_bound(quantizer_class):
    torch.manual_seed(0)
    std, bound = 16**-0.5, 16**-0.5 * 3**0.5
    uniform = initial_codes(quantizer_class(8192, 16, codebook_init="uniform"))
    normal = initial_codes(quantizer_class(8192, 16))
    assert uniform.std().item() == pytest.approx(std, rel=0.01) and normal.std().item() == pytest.approx(std, rel=0.01)
    assert uniform.abs().max().item() <= bound < normal.abs().max().item()
    assert uniform.abs().max().item() > 0.999 * bound  # filled up to the bound, not a narrower range
    with pytest.raises(ValueError, match="codebook_init"):
        quantizer_class(16, 4, codebook_init="xavier")


def test_vq_step_moves_only_the_selected_codes():
    torch.manual_seed(0)
    quantizer = VQQuantizer(1024, 16)
    before = quantizer.embedding.weight.detach().clone()
    optimizer = torch.optim.SGD(quantizer.parameters(), lr=0.1)
    output = quantizer(torch.randn(1, 16, 4, 4))
    output.loss.backward()
    optimizer.step()
    changed = (quantizer.embedding.weight != before).any(dim=1)
    selected = torch.zeros(1024, dtype=torch.bool)
    selected[output.indices.flatten()] = True
    assert torch.equal(changed, selected)


def test_backward_reaches_the_projection_through_gathered_rows_only():
    quantizer = SimVQQuantizer(65536, 16)
    latents = torch.randn(1, 16, 8, 8, requires_grad=True)
    loss = quantizer(latents).loss
    with LargestTensorSeen() as seen:
        loss.backward()
    assert quantizer.projection.weight.grad is not None
    assert seen.largest < 65536 * 16 / 100  # nothing of codebook size in the backward pass


def assert_search_uses_current_weights(quantizer: SimVQQuantizer, latents: torch.Tensor) -> None:
    """The cached search returns the nearest codes of the quantizer's codebook as it is now."""
    with torch.no_grad():
        flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
        assert torch.equal(quantizer(latents).indices.flatten(), full_matrix_nearest(flat, quantizer.codebook()))


def test_cached_codebook_follows_optimizer_steps_state_dicts_and_data_writes():
    torch.manual_seed(0)
    quantizer = SimVQQuantizer(2048, 16).eval()
    latents = torch.randn(2, 16, 8, 8)

    assert_search_uses_current_weights(quantizer, latents)
    optimizer = torch.optim.SGD(quantizer.parameters(), lr=1.0)
    quantizer.train()
    quantizer(latents.requires_grad_()).loss.backward()
    optimizer.step()
    quantizer.eval()
    assert_search_uses_current_weights(quantizer, latents)

    other = SimVQQuantizer(2048, 16)
    quantizer.load_state_dict(other.state_dict())
    assert_search_uses_current_weights(quantizer, latents)
    torch.testing.assert_close(quantizer.codebook(), other.codebook())

    quantizer.projection.weight.data.copy_(torch.randn(16, 16))  # EMA-style write: no version bump
    assert_search_uses_current_weights(quantizer, latents)
    quantizer.projection.bias.data.zero_()
    assert_search_uses_current_weights(quantizer, latents)


def test_cached_codebook_follows_a_trained_codebook_c_also_through_data_writes():
    torch.manual_seed(0)
    quantizer = SimVQQuantizer(2048, 16, train_codebook=True).eval()
    latents = torch.randn(2, 16, 8, 8)

    assert_search_uses_current_weights(quantizer, latents)
    quantizer.frozen_codebook.data.copy_(torch.randn(2048, 16))  # EMA-style write: no version bump
    assert_search_uses_current_weights(quantizer, latents)
    optimizer = torch.optim.SGD([quantizer.frozen_codebook], lr=10.0)  # C alone: W stays, so only C can tell
    quantizer.train()
    quantizer(latents.requires_grad_()).loss.backward()
    optimizer.step()
    quantizer.eval()
    assert_search_uses_current_weights(quantizer, latents)


@pytest.mark.parametrize("quantizer_class", [SimVQQuantizer, VQQuantizer])
def test_out_of_range_and_non_integer_ids_are_rejected(quantizer_class):
    quantizer = quantizer_class(100, 8)
    with pytest.raises(ValueError, match="outside the codebook"):
        quantizer.get_codebook_entry(torch.tensor([0, 100]))
    with pytest.raises(ValueError, match="outside the codebook"):
        quantizer.get_codebook_entry(torch.tensor([-1]))
    with pytest.raises(ValueError, match="integer"):
        quantizer.get_codebook_entry(torch.tensor([0.5]))
    entry = quantizer.get_codebook_entry(torch.tensor([3, 4, 5, 6]), shape=(1, 2, 2, 8))
    assert entry.shape == (1, 8, 2, 2)
    torch.testing.assert_close(entry[0, :, 0, 1], quantizer.codebook()[4])


def test_wrong_latent_shape_is_rejected():
    with pytest.raises(ValueError, match="embed_dim|batch, 8"):
        SimVQQuantizer(16, 8)(torch.randn(1, 4, 2, 2))


@pytest.mark.parametrize("quantizer_class", [SimVQQuantizer, VQQuantizer])
def test_embedding_of_ids_is_the_code_they_decode_through_on_every_quantizer(quantizer_class):
    """`quantize.embedding` means one thing everywhere (VAR's name): trained on VQ, derived and frozen on SimVQ."""
    torch.manual_seed(0)
    quantizer = quantizer_class(codebook_size=64, embed_dim=8)
    ids = torch.randint(64, (5, 7))
    with torch.no_grad():
        torch.testing.assert_close(quantizer.embedding(ids), quantizer.lookup(ids), rtol=0, atol=1e-6)
    trained = {name for name, parameter in quantizer.named_parameters() if parameter.requires_grad}
    assert ("embedding.weight" in trained) == (quantizer_class is VQQuantizer)
    assert ("embedding.weight" in quantizer.state_dict()) == (quantizer_class is VQQuantizer)
