"""Vector quantizers: SimVQ (frozen codebook, learned linear projection) and the plain-VQ baseline.

Both share one exact nearest-code search that walks the tokens × codes distance matrix in tiles, so memory
stays bounded whatever the codebook size (262,144 codes × 4,096 tokens would be a 4 GB matrix).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import initialization as init
from transformers.utils import ModelOutput

from .configuration_simvq import CODEBOOK_INITS

# One 1024 × 4096 fp32 tile is 16 MiB: large enough for the GEMM to run near peak (d = 128 is a thin inner
# dimension), small enough to stay in a 32 MiB L3 for the min-reduction that follows; smaller tiles lost GEMM
# efficiency and larger ones spilled (`python benchmarks/quantizer.py --tiles` re-measures on a new machine).
TOKEN_BLOCK = 1024
CODE_BLOCK = 4096


def squared_norms(rows: torch.Tensor, chunk: int = CODE_BLOCK) -> torch.Tensor:
    """`‖row‖²` of every row, a chunk at a time: `rows.pow(2).sum(1)` would allocate a K × d temporary."""
    return torch.cat([block.pow(2).sum(dim=1) for block in rows.split(chunk)])


@torch.no_grad()
def nearest_code_indices(
    vectors: torch.Tensor,
    codebook: torch.Tensor,
    codebook_sq_norms: torch.Tensor | None = None,
    token_block: int = TOKEN_BLOCK,
    code_block: int = CODE_BLOCK,
) -> torch.LongTensor:
    """Index of the nearest code (squared L2) for every row of `vectors`; ties go to the lowest index.

    The search runs in fp32 even under autocast, and only ever holds one `token_block × code_block` tile of
    distances: `‖c‖² − 2·z·c` (the `‖z‖²` term does not change the argmin) comes from one `addmm` per tile, and a
    running minimum carries the best code across tiles. Tiles are visited in increasing code order and only a
    strictly smaller distance replaces the running best, so a tie keeps the lowest index.

    Args:
        vectors: `(N, d)` query vectors.
        codebook: `(K, d)` codes.
        codebook_sq_norms: `(K,)` squared norms of the codes, when the caller has them cached.
    """
    if vectors.ndim != 2 or codebook.ndim != 2 or vectors.shape[1] != codebook.shape[1]:
        raise ValueError(
            f"Expected vectors (N, d) and codebook (K, d) with the same d, got {tuple(vectors.shape)} and "
            f"{tuple(codebook.shape)}."
        )
    with torch.autocast(device_type=vectors.device.type, enabled=False):
        vectors = vectors.float()
        codebook = codebook.float()
        if codebook_sq_norms is None:
            codebook_sq_norms = squared_norms(codebook)
        codebook_sq_norms = codebook_sq_norms.float()
        num_vectors, num_codes = vectors.shape[0], codebook.shape[0]
        indices = torch.empty(num_vectors, dtype=torch.long, device=vectors.device)
        tile = torch.empty(min(token_block, num_vectors) * min(code_block, num_codes), device=vectors.device)
        for start in range(0, num_vectors, token_block):
            queries = vectors[start : start + token_block]
            best_distance = torch.full((queries.shape[0],), float("inf"), device=vectors.device)
            best_index = torch.zeros(queries.shape[0], dtype=torch.long, device=vectors.device)
            for code_start in range(0, num_codes, code_block):
                codes = codebook[code_start : code_start + code_block]
                distances = tile[: queries.shape[0] * codes.shape[0]].view(queries.shape[0], codes.shape[0])
                torch.addmm(
                    codebook_sq_norms[code_start : code_start + code_block], queries, codes.T, alpha=-2, out=distances
                )
                tile_distance, tile_index = distances.min(dim=1)
                improved = tile_distance < best_distance
                best_distance = torch.where(improved, tile_distance, best_distance)
                best_index = torch.where(improved, tile_index + code_start, best_index)
            indices[start : start + token_block] = best_index
    return indices


@dataclass
class QuantizerOutput(ModelOutput):
    """
    Args:
        quantized (`torch.FloatTensor` of shape `(batch_size, embed_dim, height, width)` or `(B, d, frames)`):
            The nearest codes, laid out as the latents. While gradients flow, it carries the straight-through
            estimator `z + sg(q − z)` so the encoder receives the decoder's gradient.
        indices (`torch.LongTensor` of shape `(batch_size, height, width)`, audio `(batch_size, frames)`):
            Index of the chosen code at every position.
        loss (`torch.FloatTensor` of shape `()`):
            `beta·‖z − sg(q)‖² + ‖sg(z) − q‖²`: the first term trains the encoder, the second the codebook
            (SimVQ: the projection).
    """

    quantized: torch.FloatTensor | None = None
    indices: torch.LongTensor | None = None
    loss: torch.FloatTensor | None = None


class VectorQuantizer(nn.Module):
    """Shared machinery of the quantizers; subclasses say what the codebook is and how a code is looked up."""

    def __init__(
        self,
        codebook_size: int,
        embed_dim: int,
        commitment_beta: float = 0.25,
        codebook_init_std: float | None = None,
        codebook_init: str = "normal",
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.embed_dim = embed_dim
        self.commitment_beta = commitment_beta
        # Both kinds draw their initial codes with this std; d^-0.5 (the paper's) keeps ‖c‖ ≈ 1 whatever d is.
        self.codebook_init_std = codebook_init_std if codebook_init_std is not None else embed_dim**-0.5
        self.codebook_init = codebook_init

    def init_codebook_(self, codebook: torch.Tensor) -> torch.Tensor:
        """Fill `codebook` in place with N(0, std²) (`"normal"`, the paper's) or U(−a, a), a = std·√3 (`"uniform"`).

        Both have the same std, so the uniform ablation changes the shape of the codebook's distribution, not its
        scale. Through `transformers.initialization`, so `_init_weights` leaves a codebook loaded from a checkpoint
        alone.
        """
        std = self.codebook_init_std
        if self.codebook_init == "normal":
            return init.normal_(codebook, std=std)
        if self.codebook_init == "uniform":
            return init.uniform_(codebook, -std * 3**0.5, std * 3**0.5)
        raise ValueError(f"`codebook_init` must be one of {CODEBOOK_INITS}, got {self.codebook_init!r}.")

    def codebook(self) -> torch.Tensor:
        """The effective `(K, d)` codebook that latents are matched against."""
        raise NotImplementedError

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        """Code vectors `(..., d)` for integer `indices` of any shape; differentiable w.r.t. the trained weights."""
        raise NotImplementedError

    def _search_codebook(self) -> tuple[torch.Tensor, torch.Tensor]:
        """`(codebook, squared norms)` for the nearest-code search: detached, and fp32 even under autocast."""
        with torch.autocast(device_type=next(self.parameters()).device.type, enabled=False):
            codebook = self.codebook().detach().float()
        return codebook, squared_norms(codebook)

    def _nearest_codes(self, vectors: torch.Tensor) -> torch.LongTensor:
        """Nearest-code indices of `(N, d)` vectors: the tiled brute force, which subclasses may accelerate exactly."""
        return nearest_code_indices(vectors, *self._search_codebook())

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise `ValueError` unless `indices` are integer ids in `[0, codebook_size)`."""
        if indices.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise ValueError(f"Token ids must be an integer tensor, got dtype {indices.dtype}.")
        if indices.numel() == 0:
            return
        low, high = int(indices.min()), int(indices.max())
        if low < 0 or high >= self.codebook_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"Token id {bad} is outside the codebook: valid ids are 0 … {self.codebook_size - 1} "
                f"(codebook_size={self.codebook_size}). Were these tokens made by a model with another codebook?"
            )

    def forward(self, latents: torch.Tensor) -> QuantizerOutput:
        """Quantize image latents `(B, d, H, W)` or sequence latents `(B, d, T)` (audio); indices drop the `d` axis."""
        if latents.ndim not in (3, 4) or latents.shape[1] != self.embed_dim:
            raise ValueError(
                f"Expected latents of shape (batch, {self.embed_dim}, height, width) or (batch, {self.embed_dim}, "
                f"frames), got {tuple(latents.shape)}."
            )
        batch, dim, *positions = latents.shape
        flat = latents.movedim(1, -1).reshape(-1, dim)
        indices = self._nearest_codes(flat)
        codes = self.lookup(indices).to(latents.dtype).view(batch, *positions, dim).movedim(-1, 1)
        loss = self.commitment_beta * F.mse_loss(latents, codes.detach()) + F.mse_loss(codes, latents.detach())
        # Straight-through only where a gradient can flow: outside autograd the codes themselves are returned, so
        # decoding them is bit-identical to decoding their indices.
        quantized = latents + (codes - latents).detach() if latents.requires_grad else codes
        return QuantizerOutput(quantized=quantized, indices=indices.view(batch, *positions), loss=loss)

    def tokens_to_latents(self, image_tokens: torch.LongTensor) -> torch.Tensor:
        """A token map `(B, h, w)` → the quantized latents `(B, d, h, w)` it stands for; validates rank and ids."""
        if image_tokens.ndim != 3:
            raise ValueError(
                f"Expected image_tokens of shape (batch, height, width), got rank {image_tokens.ndim} "
                f"{tuple(image_tokens.shape)}. For a single image, add a batch dimension with tokens[None]."
            )
        self.check_indices(image_tokens)
        return self.lookup(image_tokens.long()).permute(0, 3, 1, 2)

    def get_codebook_entry(self, indices: torch.LongTensor, shape: tuple[int, int, int, int] | None = None):
        """diffusers' `VQModel` interface: codes for `indices`, as `(B, d, h, w)` when `shape` is `(B, h, w, d)`."""
        self.check_indices(indices)
        codes = self.lookup(indices.long())
        if shape is not None:
            # No .contiguous(): the layout then matches `forward`'s, so decoding both is bit-identical.
            codes = codes.view(shape).permute(0, 3, 1, 2)
        return codes


@dataclass
class _SearchTable:
    """The effective codebook and its squared norms, with the weights they were computed from; and, once asked for,
    its subspace search (`None` when the spectrum is flat)."""

    codebook_key: tuple
    weight: torch.Tensor
    bias: torch.Tensor | None
    trained_codebook: torch.Tensor | None
    codebook: torch.Tensor
    sq_norms: torch.Tensor
    subspace: object = None
    subspace_built: bool = False


class SimVQQuantizer(VectorQuantizer):
    """SimVQ: a frozen Gaussian codebook `C` reparameterised by a trained linear layer, `C·Wᵀ + b`.

    Training moves the whole effective codebook at once through `W`, so no code is left behind (no collapse).
    `C` is a persistent buffer: it is saved with the model and never touched by an optimizer. With
    `train_codebook=True` (an ablation) it is a parameter trained with `W` instead, under the same name.

    Outside training steps the search runs in the principal subspace of the cached codebook (`SubspaceSearch`: same
    indices as the brute force, much faster on a trained, low-rank codebook); set `subspace_search = False` to
    force the brute force. Inside training steps W changes every step, so the search's set-up would be paid every
    step: it runs there only with `subspace_search_in_training = True` (and `subspace_search`), which pays where the
    search still beats the brute force — a small latent and a large codebook: 1.47–1.73× per step at K = 262,144,
    d = 16 (`benchmarks/quantizer.py --trained`) — with the same indices.
    """

    def __init__(
        self,
        codebook_size: int,
        embed_dim: int,
        commitment_beta: float = 0.25,
        codebook_init_std: float | None = None,
        projection_bias: bool = True,
        codebook_init: str = "normal",
        train_codebook: bool = False,
    ):
        super().__init__(codebook_size, embed_dim, commitment_beta, codebook_init_std, codebook_init)
        codebook = self.init_codebook_(torch.empty(codebook_size, embed_dim))
        if train_codebook:
            # Still `frozen_codebook`: one state-dict key for both variants, so either folder loads into either.
            self.frozen_codebook = nn.Parameter(codebook)
        else:
            self.register_buffer("frozen_codebook", codebook)
        self.projection = nn.Linear(embed_dim, embed_dim, bias=projection_bias)
        self._search_cache: _SearchTable | None = None
        self.subspace_search = True
        self.subspace_search_in_training = False
        # A plain attribute, not a submodule: the table is derived from C and W, so it must stay out of the state
        # dict, `parameters()` (no optimizer may train it) and `_init_weights`.
        object.__setattr__(self, "_embedding_table", None)

    @property
    def embedding(self) -> nn.Embedding:
        """The current effective codebook `C·Wᵀ + b` as a frozen `nn.Embedding`: `embedding(ids)` are the codes the
        ids decode through, on every quantizer (`VQQuantizer` trains this table; here it is derived). VAR's
        transformer reads it as `quantize.embedding`.

        It shares its storage with the cached search table, so it is rebuilt only when `C`, `W` or `b` change
        (after an optimizer step, a load). Detached: VAR reads it from a frozen tokenizer.
        """
        codebook, _ = self._search_codebook()
        table = self._embedding_table
        if table is None or table.weight.data_ptr() != codebook.data_ptr():
            table = nn.Embedding.from_pretrained(codebook, freeze=True)
            object.__setattr__(self, "_embedding_table", table)
        return table

    def codebook(self) -> torch.Tensor:
        return self.projection(self.frozen_codebook)

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        # Project only the gathered rows: the gradient reaches W through them, never through a K × d product.
        return self.projection(self.frozen_codebook[indices])

    def _search_codebook(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The effective codebook costs O(K·d²) to build, so it is kept until `C`, `W` or `b` changes.

        The check compares `W` and `b` by value (O(d²)) rather than trusting version counters, because writes
        through `.data` (EMA `copy_to`, some checkpoint loaders) do not bump them; the frozen `C` is compared by
        storage and version, which `load_state_dict`, `.to()` and in-place writes all change. A trained `C`
        (`train_codebook`) receives those `.data` writes too, so it is compared by value like `W` (O(K·d), still
        below the O(K·d²) rebuild).
        """
        weight, bias, frozen = self.projection.weight, self.projection.bias, self.frozen_codebook
        codebook_key = (frozen.data_ptr(), frozen._version, frozen.dtype)
        trained = isinstance(frozen, nn.Parameter)
        cache = self._search_cache
        if (
            cache is None
            or cache.codebook_key != codebook_key
            or not torch.equal(cache.weight, weight)
            or (bias is not None and not torch.equal(cache.bias, bias))
            or (trained and not torch.equal(cache.trained_codebook, frozen))
        ):
            self._search_cache = None  # free the stale K × d table before building its successor
            codebook, sq_norms = super()._search_codebook()
            cache = _SearchTable(
                codebook_key,
                weight.detach().clone(),
                None if bias is None else bias.detach().clone(),
                frozen.detach().clone() if trained else None,
                codebook,
                sq_norms,
            )
            self._search_cache = cache
        return cache.codebook, cache.sq_norms

    def _nearest_codes(self, vectors: torch.Tensor) -> torch.LongTensor:
        """The subspace search when it applies: not when disabled, not in a training step unless asked for (W changes
        every step, so its set-up is paid each time), not off the CPU (it is built with NumPy; a GPU's brute force is
        fast anyway), not on a flat spectrum; otherwise the brute force."""
        training_step = self.training and torch.is_grad_enabled()
        wanted = self.subspace_search and (self.subspace_search_in_training or not training_step)
        if not wanted or vectors.device.type != "cpu":
            return super()._nearest_codes(vectors)
        codebook, sq_norms = self._search_codebook()
        cache = self._search_cache
        if not cache.subspace_built:
            from .subspace_search import SubspaceSearch  # imported here: it builds on this module's brute force

            cache.subspace, cache.subspace_built = SubspaceSearch.build(codebook, sq_norms), True
        if cache.subspace is None:
            return nearest_code_indices(vectors, codebook, sq_norms)
        with torch.autocast(device_type="cpu", enabled=False):
            return cache.subspace(vectors.detach())


class VQQuantizer(VectorQuantizer):
    """Plain VQ with a learned codebook: the baseline whose codebook collapses at large `K`."""

    def __init__(
        self,
        codebook_size: int,
        embed_dim: int,
        commitment_beta: float = 0.25,
        codebook_init_std: float | None = None,
        codebook_init: str = "normal",
    ):
        super().__init__(codebook_size, embed_dim, commitment_beta, codebook_init_std, codebook_init)
        self.embedding = nn.Embedding(codebook_size, embed_dim)
        self.init_codebook_(self.embedding.weight)

    def codebook(self) -> torch.Tensor:
        return self.embedding.weight

    def lookup(self, indices: torch.LongTensor) -> torch.Tensor:
        return self.embedding(indices)
