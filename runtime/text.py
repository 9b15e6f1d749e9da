"""On-device customer-service text: route a message to a department/class and find similar texts. numpy only.

A ``text_search`` bundle carries ``tokenizer.json`` (hashed like every file; read with the ``tokenizers`` package,
imported only when a bundle is opened), the sentence-embedding model (inputs ``input_ids`` and ``attention_mask``,
int [1, L]; output a normalised embedding), routing heads applied here with numpy, and a catalog of texts with int8
embeddings searched exactly. The manifest's ``catalog`` describes the files::

    {"kind": "text_embeddings", "items_file": "catalog/texts.json",     # {"ids", "texts", "labels", "sources"}
     "items": N, "dim": D, "metric": "cosine", "embedded_by": "student" | "teacher",
     "embeddings": {"int8": {"path", "dtype": "int8", "scale": "per-vector", "scale_path"}}, "default": "int8",
     "routing": {"department": {"weights": "catalog/route.department.w.npy", "bias": "...b.npy",
                                "labels": [...]}, ...}}

Routing is ``softmax(embedding @ weights + bias)``; retrieval scores are ``scale[row] * (int8 row . embedding)``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._open import open_task_bundle
from .bundle import Bundle
from .errors import BackendUnavailableError, BundleError, InputSpecError, ManifestError, UnknownNameError
from .manifest import TextPreprocessing
from .search import top_k
from .session import Session, load

#: Longest message accepted, in characters, before tokenization (the model sees at most ``max_len`` tokens anyway).
MAX_CHARS = 100_000


def _tokenizers() -> Any:
    try:
        import tokenizers
    except ImportError:
        raise BackendUnavailableError("text bundles need the 'tokenizers' package: pip install 'edgecart[text]'") \
            from None
    return tokenizers


class TextTokenizer:
    """``tokenizer.json`` with fixed-length truncation and padding: ``encode(text) -> (input_ids, attention_mask)``,
    both int64 [1, max_len]. Empty text gives the special tokens only; long text is truncated."""

    def __init__(self, tokenizer_json: str, pre: TextPreprocessing) -> None:
        tk = _tokenizers()
        try:
            self._tok = tk.Tokenizer.from_str(tokenizer_json)
        except Exception as exc:  # the tokenizers package raises a bare Exception on bad JSON
            raise ManifestError(f"tokenizer.json cannot be read ({exc}); re-export the bundle") from None
        self.pre = pre
        self._tok.no_padding()
        self._tok.no_truncation()
        self._tok.enable_truncation(max_length=pre.max_len, direction=pre.truncation)
        pad_id = self._tok.token_to_id(pre.pad_token)
        if pad_id is None:
            raise ManifestError(f"tokenizer.json has no pad token {pre.pad_token!r}; re-export the bundle")
        self._tok.enable_padding(direction=pre.padding, pad_id=pad_id, pad_token=pre.pad_token, length=pre.max_len)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], pre: TextPreprocessing) -> TextTokenizer:
        with open(path, encoding="utf-8") as f:
            return cls(f.read(), pre)

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def encode(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self.encode_batch([text])
        return ids, mask

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64 [len(texts), max_len]."""
        clean = [_check_text(t) for t in texts]
        if not clean:
            z = np.zeros((0, self.pre.max_len), np.int64)
            return z, z.copy()
        enc = self._tok.encode_batch(clean)
        ids = np.asarray([e.ids for e in enc], np.int64)
        mask = np.asarray([e.attention_mask for e in enc], np.int64)
        return ids, mask

    def tokens(self, text: str) -> list[str]:
        """The word pieces of ``text`` (without padding), for inspection."""
        e = self._tok.encode(_check_text(text))
        return [t for t, m in zip(e.tokens, e.attention_mask, strict=True) if m]


def _check_text(text: Any) -> str:
    """``text`` cut to :data:`MAX_CHARS`, with every lone surrogate (what Python makes of an undecodable byte in
    ``sys.argv``, or half of a cut UTF-16 pair) replaced by U+FFFD: the tokenizer takes only encodable text. A valid
    UTF-16 pair held as two surrogates becomes the character it encodes."""
    if not isinstance(text, str):
        raise InputSpecError(f"text must be a str, got {type(text).__name__}")
    text = text[:MAX_CHARS]
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # only surrogates cannot be encoded
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def _check_message(text: Any) -> str:
    """A message to search for or route: a str with something in it besides white space."""
    text = _check_text(text)
    if not text.strip():
        raise InputSpecError("the message is empty (or only white space): pass the customer's message to search for "
                             "or route")
    return text


@dataclass(frozen=True)
class TextHit:
    id: str
    text: str
    label: str
    source: str
    score: float


@dataclass(frozen=True)
class Route:
    """Routing of one message: per head (e.g. department, class) the labels best first with their probabilities."""

    heads: dict[str, tuple[tuple[str, float], ...]]

    def top(self, head: str | None = None) -> tuple[str, float]:
        """The most probable ``(label, probability)`` of routing head ``head`` (e.g. ``"department"``). An unknown
        or missing head is an :class:`UnknownNameError` (a ``KeyError``) listing the heads."""
        heads = ", ".join(repr(h) for h in sorted(self.heads)) or "(none)"
        if head is None:
            raise UnknownNameError(f"Route.top needs the name of a routing head; this bundle's heads: {heads}")
        if not isinstance(head, str) or head not in self.heads:
            raise UnknownNameError(f"no routing head {head!r}; this bundle's heads: {heads}")
        return self.heads[head][0]


class TextSearch:
    """``TextSearch(bundle).search("message", k=10)`` and ``.route("message")`` on a ``text_search`` bundle."""

    def __init__(self, bundle: str | os.PathLike[str] | Bundle, backend: str = "auto", threads: int | None = None, *,
                 artifact: str | None = None, precision: str | None = None, public_key: Any = None) -> None:
        self.bundle = open_task_bundle(bundle, "text_search", TextPreprocessing, "TextSearch", public_key)
        m = self.bundle.manifest
        self.preprocessing = pre = m.preprocessing
        names = [s.name for s in m.inputs]
        if names != [pre.input_ids, pre.attention_mask]:
            raise ManifestError(f"bundle {m.name!r}: model inputs {names} are not the text inputs "
                                f"[{pre.input_ids!r}, {pre.attention_mask!r}]; re-export it")
        if any(s.shape != (1, pre.max_len) for s in m.inputs):
            raise ManifestError(f"bundle {m.name!r}: model inputs must be [1, {pre.max_len}]; re-export it")
        self.tokenizer = TextTokenizer(self.bundle.read_verified(pre.tokenizer).decode("utf-8"), pre)
        self.session: Session = load(self.bundle, backend, artifact=artifact, precision=precision, threads=threads)
        self._out = m.outputs[0].name
        self.dim = int(m.outputs[0].shape[-1])
        self._read_catalog()

    def _read_catalog(self) -> None:
        m, b = self.bundle.manifest, self.bundle
        c = m.catalog or {}
        if c.get("kind") != "text_embeddings":
            raise BundleError(f"bundle {m.name!r} carries no text catalog (catalog.kind != 'text_embeddings'); "
                              "build it with 'edgecart build text'")
        try:
            items = json.loads(b.read_verified(c["items_file"]).decode("utf-8"))
            self.ids = tuple(str(i) for i in items["ids"])
            self.texts = tuple(str(t) for t in items["texts"])
            self.labels = tuple(str(t) for t in items["labels"])
            self.sources = tuple(str(t) for t in items["sources"])
            v = c["embeddings"][c.get("default", "int8")]
            self.embeddings = np.ascontiguousarray(b.load_npy(v["path"]))
            self.scales = b.load_npy(v["scale_path"]).astype(np.float32) if v["dtype"] == "int8" else None
            self.heads: dict[str, tuple[np.ndarray, np.ndarray, tuple[str, ...]]] = {}
            for head, h in (c.get("routing") or {}).items():
                w, bias = b.load_npy(h["weights"]).astype(np.float32), b.load_npy(h["bias"]).astype(np.float32)
                labels = tuple(str(x) for x in h["labels"])
                if w.shape != (self.dim, len(labels)) or bias.shape != (len(labels),):
                    raise ManifestError(f"routing head {head!r}: weights {w.shape} and bias {bias.shape} do not "
                                        f"match dimension {self.dim} and {len(labels)} labels")
                self.heads[str(head)] = (w, bias, labels)
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ManifestError):
                raise
            raise ManifestError(f"text catalog of {m.name!r} is malformed ({type(exc).__name__}: {exc}); "
                                "re-export the bundle") from None
        n = len(self.ids)
        same = len(self.texts) == len(self.labels) == len(self.sources) == n
        if not same or self.embeddings.shape != (n, self.dim):
            raise ManifestError(f"text catalog of {m.name!r}: {n} ids but embeddings {self.embeddings.shape}; "
                                "re-export the bundle")
        if self.scales is not None and self.scales.shape != (n,):
            raise ManifestError(f"text catalog of {m.name!r}: {self.scales.shape} scales for {n} rows")

    def __len__(self) -> int:
        return len(self.ids)

    def embed(self, text: str) -> np.ndarray:
        """The (D,) embedding of one message; an empty or blank message is an :class:`InputSpecError`."""
        ids, mask = self.tokenizer.encode(_check_message(text))
        return self.embed_tokens(ids, mask)

    def embed_tokens(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        pre = self.preprocessing
        out = self.session.run({pre.input_ids: ids, pre.attention_mask: mask})[self._out]
        return np.asarray(out, np.float32).reshape(-1)

    def search(self, text: str, k: int = 10) -> list[TextHit]:
        """The ``k`` catalog texts most similar to ``text``, best first."""
        return self.search_embedding(self.embed(text), k)

    def search_embedding(self, embedding: np.ndarray, k: int = 10) -> list[TextHit]:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InputSpecError(f"k must be a positive integer, got {k!r}")
        e = np.asarray(embedding, np.float32)
        if e.size != self.dim:  # (D,), or any shape holding D numbers ((1, D)) is one embedding
            raise InputSpecError(f"the query embedding has shape {e.shape}; search_embedding takes one embedding "
                                 f"of shape ({self.dim},) (or (1, {self.dim})), the catalog's dimension; search a "
                                 "batch one row at a time")
        q = e.reshape(1, -1)
        s = q @ self.embeddings.astype(np.float32, copy=False).T
        if self.scales is not None:
            s *= self.scales[None, :]
        idx, scores = top_k(s, int(k))
        return [TextHit(self.ids[i], self.texts[i], self.labels[i], self.sources[i], float(sc))
                for i, sc in zip(idx[0].tolist(), scores[0].tolist(), strict=True)]

    def route(self, text: str) -> Route:
        """Every routing head's labels for ``text``, most probable first, with softmax probabilities."""
        return self.route_embedding(self.embed(text))

    def route_embedding(self, embedding: np.ndarray) -> Route:
        if not self.heads:
            raise BundleError(f"bundle {self.bundle.manifest.name!r} has no routing heads")
        e = np.asarray(embedding, np.float32).reshape(-1)
        out = {}
        for head, (w, b, labels) in self.heads.items():
            p = softmax(e @ w + b)
            order = np.argsort(-p, kind="stable")
            out[head] = tuple((labels[i], float(p[i])) for i in order)
        return Route(out)

    def __repr__(self) -> str:
        return (f"TextSearch(bundle={self.bundle.manifest.name!r}, artifact={self.session.artifact.name!r}, "
                f"backend={self.session.backend.name!r}, catalog={len(self)} texts, heads={sorted(self.heads)})")


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


__all__ = ["MAX_CHARS", "Route", "TextHit", "TextSearch", "TextTokenizer", "softmax"]
