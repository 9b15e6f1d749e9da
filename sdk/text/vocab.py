"""A smaller vocabulary for the student: the teacher's word pieces that the corpus uses, plus every single character
(so any word still splits into known pieces), written as a new ``tokenizer.json`` with the same normaliser,
pre-tokeniser and template. The student's embedding table shrinks from 30,522 rows to a few thousand."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def reduce_tokenizer(tokenizer_json: str, texts: Sequence[str], min_count: int = 2,
                     keep_single_chars: bool = True) -> tuple[str, np.ndarray]:
    """(new tokenizer.json text, ``old_ids``) where new id ``i`` is the teacher's word piece ``old_ids[i]``.

    Kept: the special tokens, every piece the teacher's tokenizer produces at least ``min_count`` times on ``texts``,
    and (``keep_single_chars``) every one-character piece ``x`` / ``##x``. The order of the teacher's ids is kept, so
    ``[PAD]`` stays 0."""
    from tokenizers import Tokenizer

    if min_count < 1:
        raise ValueError("min_count must be >= 1")
    doc = json.loads(tokenizer_json)
    model = doc.get("model") or {}
    if model.get("type") != "WordPiece":
        raise ValueError(f"only WordPiece tokenizers can be reduced, got {model.get('type')!r}")
    vocab: dict[str, int] = model["vocab"]
    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_padding()
    tok.no_truncation()
    counts = np.zeros(len(vocab), np.int64)
    for enc in tok.encode_batch(list(texts)):
        np.add.at(counts, np.asarray(enc.ids, np.int64), 1)
    keep = counts >= min_count
    for s in SPECIALS:
        if s in vocab:
            keep[vocab[s]] = True
    if keep_single_chars:
        for piece, i in vocab.items():
            if len(piece) == 1 or (piece.startswith("##") and len(piece) == 3):
                keep[i] = True
    old_ids = np.flatnonzero(keep).astype(np.int64)
    new_of = {int(o): n for n, o in enumerate(old_ids)}
    by_id = {i: p for p, i in vocab.items()}
    model["vocab"] = {by_id[int(o)]: n for n, o in enumerate(old_ids)}
    doc["model"] = model
    doc["added_tokens"] = [dict(a, id=new_of[a["id"]]) for a in doc.get("added_tokens", []) if a["id"] in new_of]
    post = doc.get("post_processor") or {}
    for spec in (post.get("special_tokens") or {}).values():
        spec["ids"] = [new_of[i] for i in spec["ids"]]
    doc["padding"] = None
    doc["truncation"] = None
    return json.dumps(doc, ensure_ascii=False), old_ids


__all__ = ["SPECIALS", "reduce_tokenizer"]
