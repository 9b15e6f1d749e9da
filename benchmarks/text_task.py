"""Latency of a text model split into its two steps: tokenization (the ``tokenizers`` package) and encoding (the model
through the runtime), measured interleaved — every round runs each model once on the same text, in a rotating order —
so that machine load hits all models alike. numpy + runtime only (no torch).

    from edgecart.benchmarks.text_task import TextModel, time_text_models
    rows = time_text_models({"teacher": TextModel(teacher_session, teacher_tok), ...}, texts, rounds=200)
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from edgecart.runtime.session import Session
from edgecart.runtime.text import TextTokenizer

from .stats import ratio_ci


@dataclass(frozen=True)
class TextModel:
    session: Session
    tokenizer: TextTokenizer


def time_text_models(models: Mapping[str, TextModel], texts: Sequence[str], rounds: int = 200,
                     warmup: int = 10) -> dict[str, dict[str, Any]]:
    """Per model: p50/p90 of tokenize, encode and total milliseconds over ``rounds`` interleaved rounds, the mean
    real tokens per text, and the raw total samples (``samples_ms``) for ratios."""
    if rounds < 1 or not texts or not models:
        raise ValueError("need rounds >= 1, some texts and some models")
    names = list(models)
    feeds = {}
    for n, m in models.items():
        pre = m.tokenizer.pre
        feeds[n] = (pre.input_ids, pre.attention_mask, m.session.outputs[0].name)
    tok_ms: dict[str, list[float]] = {n: [] for n in names}
    enc_ms: dict[str, list[float]] = {n: [] for n in names}
    lengths: dict[str, list[int]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        text = texts[r % len(texts)]
        k = r % len(names)
        for n in names[k:] + names[:k]:
            m, (a, b, _out) = models[n], feeds[n]
            t0 = time.perf_counter()
            ids, mask = m.tokenizer.encode(text)
            t1 = time.perf_counter()
            m.session.run({a: ids, b: mask})
            t2 = time.perf_counter()
            if r >= warmup:
                tok_ms[n].append((t1 - t0) * 1e3)
                enc_ms[n].append((t2 - t1) * 1e3)
                lengths[n].append(int(mask.sum()))
    out = {}
    for n in names:
        tot = np.asarray(tok_ms[n]) + np.asarray(enc_ms[n])
        out[n] = {"artifact": models[n].session.artifact.name, "backend": models[n].session.backend.name,
                  "threads": models[n].session.threads,
                  "tokenize_ms_p50": float(np.percentile(tok_ms[n], 50)),
                  "tokenize_ms_p90": float(np.percentile(tok_ms[n], 90)),
                  "encode_ms_p50": float(np.percentile(enc_ms[n], 50)),
                  "encode_ms_p90": float(np.percentile(enc_ms[n], 90)),
                  "total_ms_p50": float(np.percentile(tot, 50)), "total_ms_p90": float(np.percentile(tot, 90)),
                  "tokens_mean": float(np.mean(lengths[n])), "rounds": rounds, "samples_ms": tot.tolist()}
    return out


def speedup(rows: Mapping[str, Mapping[str, Any]], slow: str, fast: str) -> dict[str, float]:
    """p50 total time of ``slow`` / ``fast`` with a 95% bootstrap interval."""
    r, lo, hi = ratio_ci(rows[slow]["samples_ms"], rows[fast]["samples_ms"])
    return {"speedup_p50": r, "lo": lo, "hi": hi}


def markdown(rows: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| model | artifact | backend | threads | tokens | tokenize p50 ms | encode p50 ms | total p50 ms |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for n, r in rows.items():
        lines.append(f"| {n} | {r['artifact']} | {r['backend']} | {r['threads']} | {r['tokens_mean']:.0f} | "
                     f"{r['tokenize_ms_p50']:.3f} | {r['encode_ms_p50']:.3f} | {r['total_ms_p50']:.3f} |")
    return "\n".join(lines)


__all__ = ["TextModel", "markdown", "speedup", "time_text_models"]
