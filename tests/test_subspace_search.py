"""The subspace search returns the brute force's indices exactly: trained-like and flat spectra, ties, rounding."""

import contextlib

import pytest
import torch

from hf_simvq import SimVQQuantizer, nearest_code_indices
from hf_simvq.models.simvq import subspace_search
from hf_simvq.models.simvq.quantization import VectorQuantizer, squared_norms
from hf_simvq.models.simvq.subspace_search import WIDE_GEMM, SubspaceSearch, head_dimension

# Singular values of W measured on the README's trained model (20.6, 14.8, 9.0, then ~0.1 and below).
TRAINED_HEAD = (20.6, 14.8, 9.0)


def trained_like_projection(dim: int, seed: int = 0) -> torch.Tensor:
    """A `W = U S Vᵀ` with the trained spectrum: three large singular values, a band ~0.13 → 0.03, then 0.015."""
    generator = torch.Generator().manual_seed(seed)
    singular = torch.cat([torch.tensor(TRAINED_HEAD), torch.linspace(0.13, 0.03, 13), torch.full((dim - 16,), 0.015)])
    left, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    right, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    return left @ torch.diag(singular) @ right.T


def trained_like_codebook(num_codes: int, dim: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    frozen = torch.randn(num_codes, dim, generator=generator) * dim**-0.5
    return frozen @ trained_like_projection(dim, seed).T + 0.1 * torch.randn(dim, generator=generator)


def latents_near(codebook: torch.Tensor, num: int, noise: float, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(codebook.shape[0], (num,), generator=generator)
    return codebook[picks] + noise * torch.randn(num, codebook.shape[1], generator=generator)


@contextlib.contextmanager
def count_calls(monkeypatch, method: str):
    """Record the calls to a `SubspaceSearch` method: proves that a test reaches the path it is about."""
    calls, original = [], getattr(SubspaceSearch, method)

    def spy(self, *args):
        calls.append(args)
        return original(self, *args)

    monkeypatch.setattr(SubspaceSearch, method, spy)
    yield calls


@pytest.fixture(params=["pairs", "grouped"])
def search_path(request, monkeypatch) -> str:
    """Run a test once with every latent re-scored pair by pair, once with every latent in the grouped brute force."""
    monkeypatch.setattr(subspace_search, "MAX_BALL_CODES", 10**9 if request.param == "pairs" else -1)
    return request.param


def search_of(codebook: torch.Tensor) -> SubspaceSearch:
    search = SubspaceSearch.build(codebook, squared_norms(codebook), min_codes=0)
    assert search is not None, "a trained-like spectrum must take the subspace search"
    return search


def both_searches(vectors: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return nearest_code_indices(vectors, codebook, squared_norms(codebook)), search_of(codebook)(vectors)


@pytest.mark.parametrize("num_vectors", [1, 5, 1024 + 6, 2048 + 100])
@pytest.mark.parametrize("noise", [0.005, 0.05, 0.5])
def test_identical_to_brute_force_on_trained_like_spectrum(num_vectors, noise, search_path):
    codebook = trained_like_codebook(8192, 64)
    expected, found = both_searches(latents_near(codebook, num_vectors, noise), codebook)
    assert torch.equal(found, expected)


def test_latents_far_off_the_subspace_fall_back_and_stay_exact(monkeypatch):
    """Random latents of norm ~8 admit much of the codebook under the bound: brute force for them, same ids."""
    codebook = trained_like_codebook(8192, 64)
    vectors = torch.cat([latents_near(codebook, 300, 0.01), torch.randn(200, 64)])
    boxed, original = [], SubspaceSearch._grouped_brute_force

    def grouped_spy(self, *args):
        boxed.append(original(self, *args))
        return boxed[-1]

    monkeypatch.setattr(SubspaceSearch, "_grouped_brute_force", grouped_spy)
    with count_calls(monkeypatch, "_wide_brute_force") as calls:
        expected, found = both_searches(vectors, codebook)
    assert torch.equal(found, expected)
    # Latents far off and crowded groups whose box holds most of the codebook: one brute-force call for all of them,
    # which keeps its full-height tiles.
    ((in_boxes, _),) = boxed
    boxed_out = int((~in_boxes).sum())
    assert len(calls) == 1 and boxed_out > 0 and len(calls[0][0]) > boxed_out


def test_crowded_balls_are_told_apart_by_count_or_by_nearest_codes(monkeypatch):
    """Balls up to `count_radius` are counted, wider ones tested by a (MAX_BALL_CODES + 1)-nearest query: both must
    agree with the ball's true count, for radii a hair above and below the distance where it turns crowded."""
    monkeypatch.setattr(subspace_search, "MAX_BALL_CODES", 8)  # so the boundary falls on both sides of count_radius
    codebook = trained_like_codebook(8192, 64)
    search = search_of(codebook)
    generator = torch.Generator().manual_seed(3)
    heads = search.tree.data[torch.randint(len(codebook), (400,), generator=generator).numpy()]
    heads = heads + 0.3 * torch.randn(heads.shape, generator=generator, dtype=torch.float64).numpy()
    ninth_nearest = search.tree.query(heads, k=9)[0][:, -1]
    radius = ninth_nearest * (1 + 1e-6 * (-1) ** torch.arange(len(heads)).numpy())
    counts = torch.from_numpy(search.tree.query_ball_point(heads, radius, return_length=True))
    crowded = search._crowded(heads, radius, workers=1)
    assert (radius <= search.count_radius).any() and (radius > search.count_radius).any()
    assert torch.equal(crowded, counts > 8) and torch.equal(crowded, torch.arange(len(heads)) % 2 == 0)


def test_flat_spectrum_builds_nothing_and_the_quantizer_falls_back(monkeypatch):
    monkeypatch.setattr(subspace_search, "MIN_CODES", 0)  # so that only the spectrum can turn it down
    codebook = torch.randn(8192, 64)
    assert SubspaceSearch.build(codebook, squared_norms(codebook), min_codes=0) is None
    quantizer = SimVQQuantizer(8192, 64).eval()  # a fresh W: flat spectrum
    latents = torch.randn(2, 64, 8, 8)
    with torch.no_grad():
        indices = quantizer(latents).indices
    assert quantizer._search_cache.subspace_built and quantizer._search_cache.subspace is None
    flat = latents.permute(0, 2, 3, 1).reshape(-1, 64)
    assert torch.equal(indices.flatten(), nearest_code_indices(flat, quantizer.codebook().detach()))


def test_crowded_balls_take_the_grouped_brute_force_over_a_few_codes(monkeypatch):
    """Latents a little off the codebook: their balls hold more than MAX_BALL_CODES codes, so they are searched in
    groups, each over the codes in its box (a fraction of the codebook), with the brute force's ids."""
    codebook = trained_like_codebook(65536, 64)
    vectors = latents_near(codebook, 2048, 0.3)
    boxes = []
    original = subspace_search._HeadStrips.codes_in_box
    monkeypatch.setattr(
        subspace_search._HeadStrips,
        "codes_in_box",
        lambda self, *bounds: boxes.append(original(self, *bounds)) or boxes[-1],
    )
    with count_calls(monkeypatch, "_wide_brute_force") as full_searches:
        expected, found = both_searches(vectors, codebook)
    assert torch.equal(found, expected)
    assert len(boxes) >= 2048 // subspace_search.GROUP_SIZE // 2, "the crowded latents must be searched in groups"
    assert max(len(box) for box in boxes) < len(codebook) // 2 and not full_searches


def test_duplicate_codes_go_to_the_lowest_index(monkeypatch, search_path):
    codebook = trained_like_codebook(8192, 64)
    originals = torch.arange(0, 4000, 7)
    codebook[originals + 4000] = codebook[originals]  # each duplicate sits at a higher index
    vectors = torch.cat([codebook[originals + 4000], codebook[originals + 4000] + 1e-4])
    with count_calls(monkeypatch, "_fp32_tie_break") as calls:
        expected, found = both_searches(vectors, codebook)
    assert torch.equal(found, expected)
    assert bool(calls) == (search_path == "pairs")
    assert torch.equal(found[: len(originals)], originals)


def test_codes_differing_only_in_the_tail(search_path):
    """Pairs of codes equal in the head, apart by ~1e-6…1e-3 in the tail; latents at and around their midpoints."""
    codebook = trained_like_codebook(8192, 64)
    axes = torch.linalg.eigh((codebook - codebook.mean(0)).T.double() @ (codebook - codebook.mean(0)).double())[1]
    tail_direction = axes[:, 0].float()  # eigh sorts ascending: the direction of least variance
    firsts = torch.arange(0, 4096, 16)
    offsets = torch.logspace(-6, -3, len(firsts))[:, None]
    codebook[firsts + 4096] = codebook[firsts] + offsets * tail_direction
    midpoints = codebook[firsts] + 0.5 * offsets * tail_direction
    vectors = torch.cat([midpoints, midpoints + 1e-3 * torch.randn_like(midpoints)])
    expected, found = both_searches(vectors, codebook)
    assert torch.equal(found, expected)


def test_fp32_rounding_at_the_bound(monkeypatch, search_path):
    """Latents equidistant (in exact arithmetic) from two codes, one near in the head with no tail, the other farther
    in the head with a tail aligned with the latent's: its lower bound equals the first's upper bound, and only the
    brute force's fp32 rounding decides. The search must decide the same way."""
    generator = torch.Generator().manual_seed(3)
    dim, head = 64, 3
    codebook = torch.zeros(8192, dim)
    codebook[:, :head] = torch.randn(8192, head, generator=generator) * torch.tensor([2.6, 1.9, 1.1])
    codebook[:, head:] = 1e-3 * torch.randn(8192, dim - head, generator=generator)
    pairs = torch.arange(0, 8192, 2)[:1000]
    latents = codebook[pairs].clone()
    latents[:, head:] = 0
    latent_tail = torch.zeros(dim)
    latent_tail[head] = 0.3  # ‖y_tail‖ = 0.3 along one tail direction
    latents += latent_tail
    codebook[pairs, head:] = 0  # code A: the latent's head, no tail → distance 0.3²
    tail_length = 0.02
    head_offset = (0.3**2 - (0.3 - tail_length) ** 2) ** 0.5  # code B: head offset², tail aligned → distance 0.3²
    direction = torch.nn.functional.normalize(torch.randn(len(pairs), head, generator=generator), dim=1)
    codebook[pairs + 1, :head] = codebook[pairs, :head] + head_offset * direction
    codebook[pairs + 1, head:] = 0
    codebook[pairs + 1, head] = tail_length
    with count_calls(monkeypatch, "_fp32_tie_break") as calls:
        expected, found = both_searches(latents, codebook)
    assert torch.equal(found, expected)
    assert (expected == pairs).any() and (expected == pairs + 1).any(), "rounding should decide both ways"
    assert bool(calls) == (search_path == "pairs"), "the near-ties must reach the fp32 tie-break"


def test_wide_gemm_entries_do_not_depend_on_the_shape():
    """The one BLAS property the near-tie scoring relies on: `addmm` entries of a brute-force tile come out
    bit-identical from any sub-problem with at least WIDE_GEMM rows and columns."""
    generator = torch.Generator().manual_seed(4)
    vectors, codes = torch.randn(1024, 128, generator=generator), torch.randn(4096, 128, generator=generator)
    sq_norms = squared_norms(codes)
    tile = torch.addmm(sq_norms, vectors, codes.T, alpha=-2)
    for rows, columns in [(WIDE_GEMM, WIDE_GEMM), (WIDE_GEMM, 1000), (777, WIDE_GEMM + 3), (1024, 4096)]:
        row_ids = torch.randperm(1024, generator=generator)[:rows]
        column_ids = torch.randperm(4096, generator=generator)[:columns]
        part = torch.addmm(sq_norms[column_ids], vectors[row_ids], codes[column_ids].T, alpha=-2)
        assert torch.equal(part, tile[row_ids][:, column_ids])


def test_head_dimension_follows_the_spectrum():
    assert head_dimension(torch.tensor([400.0, 200.0, 80.0, 1e-3, 1e-3, 0.0])) == 3
    assert head_dimension(torch.ones(64)) == 64


def test_small_codebooks_keep_the_brute_force():
    codebook = trained_like_codebook(8192, 64)
    assert SubspaceSearch.build(codebook, squared_norms(codebook)) is None  # below MIN_CODES


def test_quantizer_uses_it_outside_training_and_the_flag_forces_brute_force(monkeypatch):
    monkeypatch.setattr(subspace_search, "MIN_CODES", 0)
    quantizer = SimVQQuantizer(8192, 64)
    with torch.no_grad():
        quantizer.projection.weight.copy_(trained_like_projection(64))
    latents = latents_near(quantizer.codebook().detach(), 2 * 64, 0.05).view(2, 8, 8, 64).permute(0, 3, 1, 2)

    quantizer.train()
    quantizer(latents.requires_grad_())  # a training step: brute force, no set-up paid
    assert not quantizer._search_cache.subspace_built

    quantizer.eval()
    with torch.no_grad():
        fast = quantizer(latents).indices
        assert quantizer._search_cache.subspace is not None
        quantizer.subspace_search = False
        brute = quantizer(latents).indices
    assert torch.equal(fast, brute)


def test_training_steps_use_it_when_asked_with_the_brute_forces_codes_and_gradients(monkeypatch):
    """`subspace_search_in_training`: a training step builds the search for the step's W and returns the brute force's
    indices, so the loss and every gradient are bit-identical; the step after an update builds it anew."""
    monkeypatch.setattr(subspace_search, "MIN_CODES", 0)
    torch.manual_seed(0)
    quantizer = SimVQQuantizer(8192, 64).train()
    with torch.no_grad():
        quantizer.projection.weight.copy_(trained_like_projection(64))
    latents = latents_near(quantizer.codebook().detach(), 4 * 64, 0.05).view(4, 8, 8, 64).permute(0, 3, 1, 2)

    def step(in_training: bool):
        quantizer.subspace_search_in_training = in_training
        quantizer.zero_grad()
        inputs = latents.clone().requires_grad_()
        output = quantizer(inputs)
        (output.quantized.square().sum() + output.loss).backward()
        return output.indices, output.loss, inputs.grad, quantizer.projection.weight.grad.clone()

    with count_calls(monkeypatch, "__call__") as calls:
        brute = step(False)
        assert not calls and not quantizer._search_cache.subspace_built
        fast = step(True)
        assert len(calls) == 1, "the training step must have taken the subspace search"
    for expected, found in zip(brute, fast, strict=True):
        assert torch.equal(expected, found)

    first_search = quantizer._search_cache.subspace
    with torch.no_grad():
        quantizer.projection.weight.mul_(1.01)  # an optimizer step
    indices, *_ = step(True)
    assert quantizer._search_cache.subspace is not first_search, "a changed W must get its own search"
    quantizer.subspace_search_in_training = False
    assert torch.equal(indices, step(False)[0])


def test_off_the_cpu_the_quantizer_takes_the_brute_force_without_building_the_search(monkeypatch):
    """The search is a NumPy structure: latents on another device must go to the (device-agnostic) brute force without
    building it, in a training step with `subspace_search_in_training` as outside one. This machine has no GPU, so the
    latents are on `meta` and the brute force is replaced by a recorder."""
    monkeypatch.setattr(subspace_search, "MIN_CODES", 0)

    def refuse(*args, **kwargs):
        raise AssertionError("the subspace search was built for latents off the CPU")

    brute_force_calls = []
    monkeypatch.setattr(SubspaceSearch, "build", refuse)
    monkeypatch.setattr(VectorQuantizer, "_nearest_codes", lambda self, vectors: brute_force_calls.append(vectors))
    quantizer = SimVQQuantizer(1024, 8)
    quantizer.subspace_search_in_training = True
    latents = torch.empty(5, 8, device="meta")
    for training in (True, False):
        quantizer.train(training)._nearest_codes(latents)
    assert len(brute_force_calls) == 2 and all(call is latents for call in brute_force_calls)
    assert quantizer._search_cache is None, "nothing is cached for the search"
