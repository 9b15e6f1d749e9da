"""A tiny customer-service text bundle for tests: ten reviews, a 1-layer student, the real MiniLM tokenizer reduced
to their word pieces, a two-label routing head. Shared by the runtime's TextSearch tests and the per-task int8 gate
test."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TEXTS = ("The dress runs small, I had to return it", "Love these jeans, perfect fit and soft denim",
         "The zipper of the dress broke after one wash", "Pants are too long for me but the fabric is great",
         "Beautiful summer dress with pockets", "These trousers wrinkle easily", "Silky slip dress, true to size",
         "Cropped jeans with a frayed hem", "A flowy maxi dress for the beach", "Corduroy pants in a warm rust colour")
DEPT = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
MAX_LEN = 16
DIM = 24


def student_and_tokenizer() -> tuple[Any, str]:
    """(the untrained 1-layer student in eval mode, the reduced tokenizer.json); skips when MiniLM is not installed."""
    from edgecart.models.text import minilm_dir
    from edgecart.text.config import StudentSize
    from edgecart.text.train import make_student
    from edgecart.text.vocab import reduce_tokenizer

    try:
        tokenizer = (minilm_dir() / "tokenizer.json").read_text()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    small, old = reduce_tokenizer(tokenizer, TEXTS, min_count=1)
    return make_student(StudentSize(32, 1, 2, 64, 1), len(old), MAX_LEN, DIM, seed=0).eval(), small


def write_tiny_text_bundle(out: Path, model: Any, small: str, name: str, quality: dict[str, Any],
                           **config: Any) -> dict[str, Any]:
    """Write a ``text_search`` bundle of ``model`` over :data:`TEXTS` (catalog, validation and test set alike);
    ``config``: changes to ``edgecart.text.config.FAST`` (``max_len`` is :data:`MAX_LEN`). Returns the bundle's
    ``path``, the written ``rows``, and the ``model``, catalog ``emb``, routing ``heads`` and tokenizer ``tok``."""
    from edgecart.runtime.manifest import TextPreprocessing
    from edgecart.runtime.text import TextTokenizer
    from edgecart.text.bundle import CatalogTexts, EvalSet, write_text_bundle
    from edgecart.text.config import FAST
    from edgecart.text.train import embed

    tok = TextTokenizer(small, TextPreprocessing("tokenizer.json", MAX_LEN))
    ids, mask = tok.encode_batch(list(TEXTS))
    emb = embed(model, ids, mask)
    rng = np.random.default_rng(0)
    heads = {"department": (rng.standard_normal((DIM, 2)).astype(np.float32), np.zeros(2, np.float32),
                            ("Dresses", "Bottoms"))}
    cat = CatalogTexts([f"t{i}" for i in range(len(TEXTS))], TEXTS, [("Dresses", "Bottoms")[d] for d in DEPT],
                       ["review"] * len(TEXTS), emb, "student")
    ev = EvalSet(ids, mask, {"department": DEPT, "class": DEPT})
    cfg = dataclasses.replace(FAST, max_len=MAX_LEN, **config)
    path, rows = write_text_bundle(out, model, small, cfg, name=name, catalog=cat, heads=heads,
                                   gallery_labels=DEPT, gallery_rows=len(TEXTS), valid=ev, test=ev,
                                   quality=quality, progress=None)
    return {"path": path, "rows": rows, "model": model, "emb": emb, "heads": heads, "tok": tok}
