"""Exact nearest-code search in the principal subspace of a trained codebook.

Training collapses SimVQ's projection: the effective codebook `C·Wᵀ + b` of a trained model lies, to within ~0.015,
in 3–4 of its `d` directions. In the codebook's principal axes (`y = Qᵀ(z − m)`, `g_k = Qᵀ(e_k − m)`), the distance
`‖z − e_k‖² = ‖y_head − g_k,head‖² + ‖y_tail − g_k,tail‖²`, and the tail term lies between
`(‖y_tail‖ − ‖g_k,tail‖)²` and `(‖y_tail‖ + ‖g_k,tail‖)²`. A k-d tree over the `r`-dimensional heads finds, per
latent, the code whose upper bound is smallest and then every code whose lower bound does not exceed it: the only
codes that can be nearest. Only those are re-scored in full `d`. Latents whose ball holds many codes (further off
the codebook, where re-scoring pair by pair costs more than a GEMM) are grouped by position in the head space, and
each group takes the brute force over the codes in the box that holds its members' balls: the same `addmm` scores on
a few percent of the codebook.

The result is **identical** to `nearest_code_indices` (the tiled brute force), rounding included:
- every comparison that prunes a code carries a slack that bounds the fp32 rounding of the brute-force distances
  `fl(‖c‖² − 2 z·c)` whatever the summation order (`γ_{d+2}`, Higham §3.1), so no code that brute force could
  pick is ever dropped;
- among the survivors, a latent is settled when one code beats all others by more than those rounding bounds
  (scored in fp64); the rare near-ties left are scored with the brute force's own arithmetic, one `addmm` with the
  same operands, and ties go to the lowest index as there.
The one assumption is the BLAS's: an `addmm` entry does not depend on the matrix shape once both sides hold at
least `WIDE_GEMM` rows (measured on MKL and tested). Narrower brute-force tiles are reproduced by brute force itself.
"""

from dataclasses import dataclass

import numpy as np
import torch

from .quantization import CODE_BLOCK, TOKEN_BLOCK, nearest_code_indices

# Below this many rows or columns, MKL's sgemm takes other code paths (gemv, small-matrix kernels) that sum in another
# order; at or above it every entry comes out bit-identical to the brute force's 1024 × 4096 tiles.
WIDE_GEMM = 32
# The head keeps every direction until what is left of the codebook's variance is below this fraction.
TAIL_VARIANCE_FRACTION = 1e-4
# A k-d tree only pays in a few dimensions; beyond this the spectrum counts as flat and brute force is used.
MAX_HEAD_DIM = 8
# Below this many codes the brute force is already fast (0.03 s for 4,096 latents at 8,192 codes) and the search's
# fixed costs (tree queries, bookkeeping: ~0.1 s) do not pay.
MIN_CODES = 32768
# Re-scoring one candidate pair by pair costs ~0.45 µs, a latent's share of a grouped brute force tens of µs: a latent
# whose ball holds more than MAX_BALL_CODES codes goes to the grouped brute force. Latents per group: enough rows for
# a wide GEMM, few enough for a tight box. Both chosen by a sweep (32/128/512 × 64/128) at K = 262,144, d = 128,
# latents = code + N(0, σ²), σ ∈ {0.01, 0.05, 0.2}, 2 cores, 2026-12-03.
MAX_BALL_CODES = 128
GROUP_SIZE = 128
# A latent whose ball is wider than this many standard deviations of the codes along the first axis is far off the
# codebook (an untrained encoder's): its ball holds much of the codebook, and even counting it costs more than the
# brute force saves, so it goes to the brute force directly.
FAR_RADIUS_STDS = 1.0
# A ball is counted when its radius is at most the median distance from a code to its COUNTED_BALL_CODES-th nearest
# code (cheap: a few dozen codes), and tested with a (MAX_BALL_CODES + 1)-nearest query when wider.
COUNTED_BALL_CODES = 32
# Strips of the first head axis per standard deviation of the codes along it (the box index, `_HeadStrips`).
STRIPS_PER_STD = 8
# The ball's codes are pruned again with their exact distance over this many leading directions (head + a middle
# band), bounding only the rest: the code tails left outside are ~4× smaller, and so are the candidate sets.
BOUND_DIM = 24
# Pairs (latent, code) re-scored at once in fp64: bounds the gathered `pairs × d` block to 64 MiB at d = 128.
RESCORE_CHUNK = 65536

UNIT_ROUNDOFF = 2.0**-24


def _gamma(n: int) -> float:
    """Higham's `γ_n = n·u / (1 − n·u)`: bounds the relative error of any fp32 sum of `n + 1` rounded products."""
    return n * UNIT_ROUNDOFF / (1 - n * UNIT_ROUNDOFF)


def head_dimension(variances: torch.Tensor) -> int:
    """Smallest `r` whose discarded variance is below `TAIL_VARIANCE_FRACTION` of the total (`variances` descending)."""
    remaining = variances.flip(0).cumsum(0).flip(0)  # remaining[i] = variance in directions i, i+1, …
    below = (remaining <= TAIL_VARIANCE_FRACTION * remaining[0]).nonzero()
    return int(below[0]) if len(below) else variances.numel()


def principal_axes(codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The codes' mean, their variances along the principal directions (descending, fp64) and those directions."""
    codes = codebook.double()
    mean = codes.mean(dim=0)
    centred = codes - mean
    variances, axes = torch.linalg.eigh(centred.T @ centred)
    return mean, variances.flip(0).clamp_min(0), axes.flip(1)


@dataclass
class SubspaceSearch:
    """The principal axes of one codebook, its codes' heads in a k-d tree, and their tail norms.

    Build it once per codebook with `SubspaceSearch.build` (which returns `None` when the spectrum is flat), then
    call it on `(N, d)` latents for the indices `nearest_code_indices` would return.
    """

    codebook: torch.Tensor  # (K, d) fp32: the brute force's operands, re-used for the final scores
    sq_norms: torch.Tensor  # (K,) fp32, as given to the brute force
    mean: torch.Tensor  # (d,) fp64
    axes: torch.Tensor  # (d, d) fp64, columns = principal directions, by decreasing variance
    head_dim: int
    tree: object  # scipy.spatial.cKDTree over the (K, head_dim) heads
    tail_norms: torch.Tensor  # (K,) fp64, ‖g_k‖ outside the head
    middle: torch.Tensor  # (K, BOUND_DIM − head_dim) fp64, g_k in the directions after the head
    far_tail_norms: torch.Tensor  # (K,) fp64, ‖g_k‖ outside the first BOUND_DIM directions
    code_norms: torch.Tensor  # (K,) fp64, ‖e_k‖
    strips: "_HeadStrips"  # the heads again, sorted for box queries
    far_radius: float  # FAR_RADIUS_STDS × the codes' standard deviation along the first axis
    count_radius: float  # balls up to this radius are counted, wider ones tested by a k-nearest query (`_crowded`)

    @classmethod
    @torch.no_grad()
    def build(
        cls,
        codebook: torch.Tensor,
        sq_norms: torch.Tensor,
        max_head_dim: int = MAX_HEAD_DIM,
        min_codes: int | None = None,
    ) -> "SubspaceSearch | None":
        """Principal axes of `codebook` (fp64), the head dimension from its spectrum, and the k-d tree.

        `None` when the search cannot pay or cannot match the brute force exactly: flat spectrum (`r >
        max_head_dim`: a fresh `W`, plain VQ), fewer than `min_codes` codes (default `MIN_CODES`), scipy missing,
        or a last code tile too narrow for a wide GEMM.
        """
        num_codes = codebook.shape[0]
        last_tile = num_codes % CODE_BLOCK or min(num_codes, CODE_BLOCK)
        if num_codes < (MIN_CODES if min_codes is None else min_codes) or last_tile < WIDE_GEMM:
            return None
        try:
            from scipy.spatial import cKDTree
        except ImportError:
            return None
        mean, variances, axes = principal_axes(codebook)
        head_dim = head_dimension(variances)
        if head_dim > max_head_dim:
            return None
        codes = codebook.double()
        projected = (codes - mean) @ axes
        bound_dim = max(BOUND_DIM, head_dim)
        heads = projected[:, :head_dim].numpy()
        tree = cKDTree(heads)
        return cls(
            codebook=codebook,
            sq_norms=sq_norms,
            mean=mean,
            axes=axes,
            head_dim=head_dim,
            tree=tree,
            tail_norms=projected[:, head_dim:].norm(dim=1),
            middle=projected[:, head_dim:bound_dim].contiguous(),
            far_tail_norms=projected[:, bound_dim:].norm(dim=1),
            code_norms=codes.norm(dim=1),
            strips=_HeadStrips.build(heads),
            far_radius=FAR_RADIUS_STDS * float(heads[:, 0].std()),
            count_radius=_typical_neighbour_distance(tree, heads, COUNTED_BALL_CODES),
        )

    def _rounding_slack(self, latent_norms: torch.Tensor) -> torch.Tensor:
        """Per latent, a bound on how far the brute force's fp32 scores of two codes can move their difference.

        Each score `fl(s_k − 2 z·e_k)` is within `γ_{d+2}(s_k + 2‖z‖‖e_k‖)` of exact, and `s_k` itself within
        `γ_d‖e_k‖²` of `‖e_k‖²`; two codes together stay below `4γ_{d+2}(‖z‖ + max‖e‖)²`. The fp64 side of this
        search adds ~1e-15 relative, covered by the extra `1e-10`.
        """
        scale = (latent_norms + self.code_norms.max()) ** 2
        return (4 * _gamma(self.codebook.shape[1] + 2) + 1e-10) * scale

    @torch.no_grad()
    def __call__(self, vectors: torch.Tensor) -> torch.LongTensor:
        """Indices of the nearest codes of `(N, d)` `vectors`, identical to `nearest_code_indices`."""
        vectors = vectors.float()
        num_vectors = vectors.shape[0]
        # The brute force's last token block is a narrower GEMM when it holds fewer than WIDE_GEMM rows: hand exactly
        # those rows to it, so its tile shape (and rounding) is reproduced.
        last_block = num_vectors % TOKEN_BLOCK or min(num_vectors, TOKEN_BLOCK)
        if last_block < WIDE_GEMM:
            tail_start = num_vectors - last_block
            head = self(vectors[:tail_start]) if tail_start else vectors.new_empty(0, dtype=torch.long)
            return torch.cat([head, nearest_code_indices(vectors[tail_start:], self.codebook, self.sq_norms)])

        latents = vectors.double()
        rotated = (latents - self.mean) @ self.axes
        heads = rotated[:, : self.head_dim].numpy()
        latent_tails = rotated[:, self.head_dim :].norm(dim=1)
        slack = self._rounding_slack(latents.norm(dim=1))
        workers = torch.get_num_threads()

        # The code nearest in the head bounds the best full distance from above; a code can only win if its lower
        # bound reaches below that, which confines it to a ball around the latent's head.
        head_distance, nearest_head = self.tree.query(heads, k=1, workers=workers)
        nearest_head = torch.from_numpy(nearest_head)
        upper = torch.from_numpy(head_distance) ** 2 + (latent_tails + self.tail_norms[nearest_head]) ** 2
        least_tail_term = (latent_tails - self.tail_norms.max()).clamp_min(0) ** 2
        radius = (upper + slack - least_tail_term).clamp_min(0).sqrt() * (1 + 1e-9) + 1e-12
        indices = torch.empty(num_vectors, dtype=torch.long)
        far = radius > self.far_radius
        near = (~far).nonzero().squeeze(1)
        crowded = torch.zeros(num_vectors, dtype=torch.bool)
        if len(near):
            crowded[near] = self._crowded(heads[near.numpy()], radius[near].numpy(), workers)
        # Far latents and the groups whose box holds much of the codebook take the brute force together: one call, so
        # its GEMMs keep the full 1024-row tiles instead of a group's 128 rows (1.7× slower per latent).
        brute_force = far.clone()
        if crowded.any():
            rows = crowded.nonzero().squeeze(1)
            boxed, picks = self._grouped_brute_force(vectors[rows], heads[rows.numpy()], radius[rows].numpy())
            indices[rows[boxed]] = picks
            brute_force[rows[~boxed]] = True
        if brute_force.any():
            indices[brute_force] = self._wide_brute_force(vectors[brute_force])
        light = (~far & ~crowded).nonzero().squeeze(1)
        if len(light):
            indices[light] = self._search_candidates(
                vectors[light],
                latents[light],
                rotated[light],
                heads[light.numpy()],
                upper[light],
                slack[light],
                radius[light],
                workers,
            )
        return indices

    def _crowded(self, heads: np.ndarray, radius: np.ndarray, workers: int) -> torch.Tensor:
        """Whether each latent's ball holds more than `MAX_BALL_CODES` codes. Counting a ball costs as much as the
        codes in it (thousands for an untrained encoder's latents: 2 s of a 9 s search), so a ball wider than
        `count_radius` is tested with a query for its `MAX_BALL_CODES + 1` nearest codes instead."""
        if MAX_BALL_CODES >= len(self.codebook) or MAX_BALL_CODES < 0:  # no ball can hold more / every ball does
            return torch.full((len(heads),), MAX_BALL_CODES < 0)
        crowded = np.empty(len(heads), dtype=bool)
        small = radius <= self.count_radius
        if small.any():
            counts = self.tree.query_ball_point(heads[small], radius[small], workers=workers, return_length=True)
            crowded[small] = counts > MAX_BALL_CODES
        if not small.all():
            distances, _ = self.tree.query(heads[~small], k=MAX_BALL_CODES + 1, workers=workers)
            crowded[~small] = distances[:, -1] <= radius[~small]
        return torch.from_numpy(crowded)

    def _grouped_brute_force(
        self, vectors: torch.Tensor, heads: np.ndarray, radius: np.ndarray
    ) -> tuple[torch.Tensor, torch.LongTensor]:
        """The brute force for groups of nearby latents, each over the codes whose heads lie in its members' balls'
        bounding box: every code that can win is in the box, and each score is the brute force's own `addmm` entry.

        Returns which latents were searched so (a box of at most half the codebook) and their indices; the others
        are left to the caller's brute force."""
        boxed = torch.zeros(len(vectors), dtype=torch.bool)
        indices = torch.empty(len(vectors), dtype=torch.long)
        for group in _nearby_groups(heads, GROUP_SIZE):
            low = (heads[group] - radius[group, None]).min(axis=0)
            high = (heads[group] + radius[group, None]).max(axis=0)
            box = self.strips.codes_in_box(low, high)
            if 2 * len(box) > self.codebook.shape[0]:
                continue
            rows = torch.from_numpy(group)
            codes = _wide(torch.from_numpy(box), CODE_BLOCK)  # sorted: the first minimum is the lowest id
            nearest = nearest_code_indices(
                _wide(vectors[rows], TOKEN_BLOCK), self.codebook[codes], self.sq_norms[codes]
            )
            indices[rows] = codes[nearest[: len(group)]]
            boxed[rows] = True
        return boxed, indices[boxed]

    def _search_candidates(self, vectors, latents, rotated, heads, upper, slack, radius, workers):
        """Prune the ball's codes with their own tail bounds, re-score the rest in fp64, settle near-ties in fp32."""
        balls = self.tree.query_ball_point(heads, radius.numpy(), workers=workers)
        lengths = torch.tensor([len(ball) for ball in balls])
        owner = torch.repeat_interleave(torch.arange(len(balls)), lengths)
        codes = torch.from_numpy(np.concatenate([np.asarray(ball, dtype=np.int64) for ball in balls]))

        # Per-code bounds: distance over the first BOUND_DIM directions exact in fp64, the rest within (‖y_t‖ ∓ ‖g_t‖)².
        bound_dim = self.head_dim + self.middle.shape[1]
        leading = (rotated[owner, : self.head_dim] - self._heads(codes)).pow(2).sum(dim=1)
        leading += (rotated[owner, self.head_dim : bound_dim] - self.middle[codes]).pow(2).sum(dim=1)
        far_latent_tails = rotated[:, bound_dim:].norm(dim=1)[owner]
        tails = self.far_tail_norms[codes]
        lower = leading + (far_latent_tails - tails) ** 2
        pair_upper = leading + (far_latent_tails + tails) ** 2
        best_upper = torch.minimum(upper, self._segment_min(pair_upper, owner, len(balls)))
        keep = lower <= best_upper[owner] + slack[owner]
        owner, codes = owner[keep], codes[keep]

        # fp64 scores of the brute force's own quantity s_k − 2 z·e_k, with its fp32 rounding bound.
        scores = torch.cat(
            [
                self.sq_norms[c].double() - 2 * (latents[o] * self.codebook[c].double()).sum(dim=1)
                for o, c in zip(owner.split(RESCORE_CHUNK), codes.split(RESCORE_CHUNK), strict=True)
            ]
        )
        latent_norms = latents.norm(dim=1)
        error = (_gamma(self.codebook.shape[1] + 2) + 1e-12) * (
            self.sq_norms[codes].double() + 2 * latent_norms[owner] * self.code_norms[codes]
        )
        best_high = self._segment_min(scores + error, owner, len(balls))
        contenders = scores - error <= best_high[owner]
        owner, codes, scores = owner[contenders], codes[contenders], scores[contenders]

        # A latent left with one contender is settled; near-ties go through the brute force's arithmetic.
        num_contenders = torch.bincount(owner, minlength=len(balls))
        indices = torch.empty(len(balls), dtype=torch.long)
        settled = num_contenders[owner] == 1
        indices[owner[settled]] = codes[settled]
        tied = (num_contenders > 1).nonzero().squeeze(1)
        if len(tied):
            indices[tied] = self._fp32_tie_break(vectors, tied, owner[~settled], codes[~settled])
        return indices

    def _heads(self, codes: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.tree.data[codes.numpy()])

    @staticmethod
    def _segment_min(values: torch.Tensor, owner: torch.Tensor, size: int) -> torch.Tensor:
        """Minimum of `values` per owner (`inf` for owners without values)."""
        out = torch.full((size,), float("inf"), dtype=values.dtype)
        return out.scatter_reduce(0, owner, values, reduce="amin")

    def _fp32_tie_break(self, vectors, tied, owner, codes) -> torch.LongTensor:
        """For latents `tied`, the contender brute force picks: its fp32 `addmm` score, lowest index on ties."""
        row_of = torch.full((len(vectors),), -1, dtype=torch.long)
        row_of[tied] = torch.arange(len(tied))
        picks = []
        for block in tied.split(TOKEN_BLOCK):
            in_block = (owner >= block[0]) & (owner <= block[-1])
            union, column = torch.unique(codes[in_block], return_inverse=True)  # sorted: first minimum = lowest id
            padded_union = _wide(union)
            scores = torch.addmm(
                self.sq_norms[padded_union], _wide(vectors[block]), self.codebook[padded_union].T, alpha=-2
            )
            rows = row_of[owner[in_block]] - row_of[block[0]]
            masked = torch.full((len(block), len(union)), float("inf"))
            masked[rows, column] = scores[rows, column]
            picks.append(union[masked.argmin(dim=1)])
        return torch.cat(picks)

    def _wide_brute_force(self, vectors: torch.Tensor) -> torch.LongTensor:
        """The brute force on some latents, padded so each of its token blocks is a wide GEMM (same rounding)."""
        return nearest_code_indices(_wide(vectors, TOKEN_BLOCK), self.codebook, self.sq_norms)[: len(vectors)]


def _typical_neighbour_distance(tree, heads: np.ndarray, rank: int, sample: int = 1024) -> float:
    """Median distance from a code to its `rank`-th nearest other code, over an evenly spaced sample of codes."""
    rows = np.linspace(0, len(heads) - 1, min(sample, len(heads))).astype(np.int64)
    distances, _ = tree.query(heads[rows], k=min(rank + 1, len(heads)))
    return float(np.median(distances[:, -1]))


def _nearby_groups(points: np.ndarray, size: int) -> list[np.ndarray]:
    """Row indices of `points` split into groups of at most `size` by repeated median cuts along the widest of the
    first three axes: compact groups, so the boxes around them stay small."""
    groups, pending = [], [np.arange(len(points))]
    while pending:
        rows = pending.pop()
        if len(rows) <= size:
            groups.append(rows)
            continue
        leading = points[rows, :3]
        axis = int(np.argmax(leading.max(axis=0) - leading.min(axis=0)))
        rows = rows[np.argsort(leading[:, axis], kind="stable")]
        pending += [rows[: len(rows) // 2], rows[len(rows) // 2 :]]
    return groups


@dataclass
class _HeadStrips:
    """Code heads cut into strips along the first axis and sorted by the second within a strip, so that the codes
    in a box are a few contiguous runs (one per strip) found by binary search. scipy's k-d tree answers balls and
    cubes only; a box query is what the grouped brute force needs."""

    order: np.ndarray  # (K,) code ids in strip order
    keys: np.ndarray  # (K,) strip · span + second coordinate, ascending
    heads: np.ndarray  # (K, r) heads in strip order
    strip_width: float
    second_min: float
    span: float

    @classmethod
    def build(cls, heads: np.ndarray) -> "_HeadStrips":
        first = heads[:, 0]
        second = heads[:, 1] if heads.shape[1] > 1 else np.zeros_like(first)
        strip_width = max(float(first.std()), 1e-12) / STRIPS_PER_STD
        second_min, span = float(second.min()), float(second.max() - second.min()) + 1.0
        keys = np.floor(first / strip_width) * span + (second - second_min)
        order = np.argsort(keys, kind="stable")
        return cls(order, keys[order], heads[order], strip_width, second_min, span)

    def codes_in_box(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """Sorted ids of the codes whose heads lie in `[low, high]` (all axes, bounds included)."""
        strips = np.arange(np.floor(low[0] / self.strip_width), np.floor(high[0] / self.strip_width) + 1)
        second_low, second_high = (low[1], high[1]) if len(low) > 1 else (0.0, 0.0)
        starts = np.searchsorted(self.keys, strips * self.span + (second_low - self.second_min), side="left")
        ends = np.searchsorted(self.keys, strips * self.span + (second_high - self.second_min), side="right")
        lengths = ends - starts
        offsets = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        candidates = offsets + np.arange(lengths.sum())
        inside = np.all((self.heads[candidates] >= low) & (self.heads[candidates] <= high), axis=1)
        return np.sort(self.order[candidates[inside]])


def _wide(rows: torch.Tensor, block: int | None = None) -> torch.Tensor:
    """`rows`, cycled to at least `WIDE_GEMM` of them (and so that a last `block` is not narrower either)."""
    target = max(len(rows), WIDE_GEMM)
    if block is not None and 0 < target % block < WIDE_GEMM:
        target += WIDE_GEMM - target % block
    return rows[torch.arange(target) % len(rows)]


__all__ = ["SubspaceSearch", "head_dimension", "principal_axes"]
