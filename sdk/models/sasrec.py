"""SASRec-style sequential recommenders (Kang & McAuley, 2018): causal self-attention over the last N items.

Input ``history``: int64 [B, N] item indices, left-padded with 0, most recent item last. Output ``scores``: float32
[B, num_items + 1], the next-item score of every index; column 0 is the padding slot and must be ignored. Items are
scored with the same embedding table that embeds the input (shared item embeddings).

Masking uses only ops that torch.export, ONNX, ExecuTorch/XNNPACK and LiteRT all take: a constant boolean causal
matrix, ``history != 0`` for the keys, and ``torch.where`` with a finite large negative value (not ``-inf``, not an
additive mask, so an int8 recipe never sees a huge value in a quantised tensor). Each position may always attend to
itself, so a fully padded row stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from edgecart.runtime.manifest import IOSpec, TensorSpec
from torch import nn
from torch.nn import functional as F  # noqa: N812

_MASKED = -1.0e4


@dataclass(frozen=True)
class SASRecConfig:
    """Size of a SASRec model. ``num_items`` excludes the padding index 0."""

    num_items: int
    max_len: int = 50
    dim: int = 64
    heads: int = 2
    layers: int = 2
    ffn_mult: int = 2
    dropout: float = 0.2

    def __post_init__(self) -> None:
        for name in ("num_items", "max_len", "dim", "heads", "layers", "ffn_mult"):
            if getattr(self, name) < 1:
                raise ValueError(f"SASRecConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} must be divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")


class _Block(nn.Module):
    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.ln1 = nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.dim)
        self.ln2 = nn.LayerNorm(cfg.dim)
        self.ff1 = nn.Linear(cfg.dim, cfg.ffn_mult * cfg.dim)
        self.ff2 = nn.Linear(cfg.ffn_mult * cfg.dim, cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        att = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = torch.where(allowed, att, torch.full_like(att, _MASKED))
        att = self.drop(torch.softmax(att, dim=-1))
        y = torch.matmul(att, v).permute(0, 2, 1, 3).reshape(b, n, d)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.ff2(self.drop(F.relu(self.ff1(self.ln2(x))))))


def _encode(m: SASRec | SASRecUserVector, e: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """The transformer over item embeddings ``e`` [B, N, dim] with ``keep`` [B, N] marking real (non-padding) items."""
    x = e * math.sqrt(m.cfg.dim) + m.positions
    x = m.drop(x) * keep.unsqueeze(-1).to(x.dtype)
    allowed = (m.causal & keep[:, None, None, :]) | m.diagonal  # [B, 1, N, N]
    for block in m.blocks:
        x = block(x, allowed) * keep.unsqueeze(-1).to(x.dtype)
    return m.ln(x)


class SASRec(nn.Module):
    """Item + learned position embeddings, ``layers`` pre-LN causal transformer blocks, shared-embedding scoring."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.items = nn.Embedding(cfg.num_items + 1, cfg.dim, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(cfg.max_len, cfg.dim))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.layers))
        self.ln = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        n = cfg.max_len
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        self.register_buffer("causal", causal, persistent=False)
        self.register_buffer("diagonal", torch.eye(n, dtype=torch.bool), persistent=False)
        nn.init.normal_(self.items.weight, std=0.02)
        nn.init.normal_(self.positions, std=0.02)
        with torch.no_grad():
            self.items.weight[0].zero_()

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, N, dim] for every position (position i sees items 0..i)."""
        return _encode(self, self.items(history), history != 0)

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        """Scores of every item index (column 0 = padding) for hidden states [..., dim]."""
        return F.linear(hidden, self.items.weight)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """Next-item scores [B, num_items + 1] after the last (most recent) position."""
        return self.score(self.encode(history)[:, -1, :])

    @property
    def io_spec(self) -> IOSpec:
        n, v = self.cfg.max_len, self.cfg.num_items + 1
        return IOSpec(
            inputs=(TensorSpec("history", "int64", (1, n), "NT",
                               description=f"the last {n} item indices, left-padded with 0, most recent last"),),
            outputs=(TensorSpec("scores", "float32", (1, v), "NC",
                                description="next-item score per item index; column 0 is padding, ignore it"),),
        )


class SASRecUserVector(nn.Module):
    """What a bundle exports: the embeddings of the history in, the user vector out.

    Input ``history_embeddings`` float32 [B, N, dim]: the item-table rows of the last N items, left-padded with zero
    rows (padding is a zero row, so the model finds it itself). Output ``user_vector`` [B, dim]: the hidden state
    after the most recent item. The runtime gathers the input rows from the bundle's int8 item table and scores the
    output against the same table (``score = user_vector · item_row``), so the item table is stored once, outside the
    model file — which holds only the transformer — and can change without re-exporting the model.
    """

    def __init__(self, model: SASRec) -> None:
        super().__init__()
        self.cfg = model.cfg
        self.positions = model.positions
        self.blocks = model.blocks
        self.ln = model.ln
        self.drop = model.drop
        self.register_buffer("causal", model.causal, persistent=False)
        self.register_buffer("diagonal", model.diagonal, persistent=False)

    def forward(self, history_embeddings: torch.Tensor) -> torch.Tensor:
        keep = history_embeddings.abs().sum(dim=-1) > 0
        return _encode(self, history_embeddings, keep)[:, -1, :]

    @property
    def io_spec(self) -> IOSpec:
        n, d = self.cfg.max_len, self.cfg.dim
        return IOSpec(
            inputs=(TensorSpec("history_embeddings", "float32", (1, n, d), "NTC",
                               description=f"item-table rows of the last {n} items, left-padded with zero rows, most "
                                           "recent last (catalog.item_embeddings: q[i] * scale[i])"),),
            outputs=(TensorSpec("user_vector", "float32", (1, d), "NC",
                                description="the user's state after the last item; score item i as "
                                            "user_vector · item_table[i] (catalog.item_embeddings)"),),
        )


class SASRecEnsemble(nn.Module):
    """Several SASRec models of one size (e.g. trained from different seeds) as one teacher: the mean of their
    log-probabilities over the catalogue (padding column at -1e9). ``encode`` and ``items`` are the first member's
    (for a hint loss or a PCA initialisation)."""

    def __init__(self, members: list[SASRec] | tuple[SASRec, ...]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one model")
        if len({m.cfg for m in members}) != 1:
            raise ValueError("ensemble members must share one SASRecConfig")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg
        self.items = members[0].items

    def encode(self, history: torch.Tensor) -> torch.Tensor:
        return self.members[0].encode(history)

    def log_probs(self, history: torch.Tensor) -> torch.Tensor:
        """Mean log-probabilities [B, N, num_items + 1] at every position; column 0 (padding) is -inf."""
        total = None
        for m in self.members:
            logits = m.score(m.encode(history))
            logits[..., 0] = -torch.inf
            lp = torch.log_softmax(logits, dim=-1)
            total = lp if total is None else total + lp
        assert total is not None
        return total / len(self.members)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        out = self.log_probs(history)[:, -1, :]
        return torch.nan_to_num(out, neginf=-1.0e9)


def as_teacher(members: list[SASRec] | tuple[SASRec, ...]) -> SASRec | SASRecEnsemble:
    """One trained model as itself, several as their ensemble (in eval mode): the teacher of a distillation."""
    return members[0] if len(members) == 1 else SASRecEnsemble(members).eval()


def num_params(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def teacher_config(num_items: int, max_len: int = 50, dim: int = 128, layers: int = 2, heads: int = 2,
                   dropout: float = 0.2) -> SASRecConfig:
    """The default teacher: 2 blocks, 2 heads, 128-d (the SASRec paper's ML-1M setting uses 2 blocks, 50-d; on the
    Instacart sample 128-d measured clearly better than 64-d, on MovieLens-100K about the same)."""
    return SASRecConfig(num_items, max_len, dim, heads, layers, 2, dropout)


def student_config(num_items: int, max_len: int = 50, dim: int = 32, layers: int = 1, heads: int = 1,
                   dropout: float = 0.1) -> SASRecConfig:
    """The default student: 1 block, 1 head, 32-d — 1/4 of the default teacher or less (the item table, which
    dominates both, shrinks 4x; the student has one block of 32-d against the teacher's two of 128-d)."""
    return SASRecConfig(num_items, max_len, dim, heads, layers, 2, dropout)
