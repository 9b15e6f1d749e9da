"""Write a ``recommendations`` bundle: the student in every format (fp32, and int8 behind a quality gate evaluated
through the runtime), the shop's item table, popularity for cold starts, an int8 item-embedding table, and the
quality of every artifact on the test targets measured through the runtime."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.data.sequences import SequenceData, Split, left_pad
from edgecart.exporters import BundleWriter, QualityGate, export_artifact, export_int8_gated, golden_from_model
from edgecart.exporters.gate import evaluate_artifact
from edgecart.models.sasrec import SASRec
from edgecart.runtime.manifest import Artifact, SequencePreprocessing
from edgecart.runtime.search import quantize_rows
from edgecart.runtime.session import Session

from .config import RecsConfig
from .metrics import PROTOCOL, evaluate_scores

ITEMS = "catalog/items.npy"
POPULARITY = "catalog/popularity.npy"
EMBEDDINGS = "catalog/item_embeddings.int8.npy"
EMBEDDING_SCALES = "catalog/item_embeddings.scale.npy"


@dataclass(frozen=True)
class ArtifactRow:
    """One exported artifact, evaluated through the runtime on the test targets."""

    artifact: str
    format: str
    precision: str
    backend: str
    bytes: int
    recall: float
    ndcg: float
    cosine: float | None
    recipe: str | None = None


def session_scores(session: Session, histories: tuple[np.ndarray, ...] | list[np.ndarray]) -> np.ndarray:
    """Scores [U, num_items + 1] from a runtime session, one [1, N] query per history (as on a device)."""
    n = session.inputs[0].shape[1]
    name = session.outputs[0].name
    rows = [session.run(left_pad(h, n)[None, :])[name][0] for h in histories]
    return np.stack(rows).astype(np.float32)


def session_evaluator(histories: tuple[np.ndarray, ...] | list[np.ndarray], targets: np.ndarray,
                      k: int = 10) -> Callable[[Session], dict[str, float]]:
    """A function Session -> {recall@k, ndcg@k, users} for the exporters' quality gate."""
    def evaluate(session: Session) -> dict[str, float]:
        return evaluate_scores(session_scores(session, histories), targets, k)

    return evaluate


def write_bundle(model: SASRec, data: SequenceData, split: Split, cfg: RecsConfig, out: Path, *,
                 popularity: np.ndarray, quality: dict[str, Any], name: str, version: str = "0.1.0",
                 progress: Callable[[str], None] | None = None) -> tuple[Path, list[ArtifactRow], dict[str, Any]]:
    """Export ``model`` into a bundle at ``out``; returns (path, one row per kept artifact, catalog description)."""
    from edgecart.runtime.backends import backend_for_format

    say = progress or (lambda _m: None)
    model = model.eval()
    n = model.cfg.max_len
    io = model.io_spec
    rng = np.random.default_rng(0)
    lengths = [n, max(1, n // 2), min(3, n), 1]
    golden_x = [left_pad(split.test_history[i][-lengths[i % 4]:], n)
                for i in range(min(cfg.golden_samples, split.num_users))]
    samples = [(_as_input(x),) for x in golden_x]
    golden = golden_from_model(model, samples, io)
    users = rng.choice(split.num_users, size=cfg.calibration_samples, replace=split.num_users < cfg.calibration_samples)
    calibration = [(_as_input(left_pad(split.valid_history[u][-int(rng.integers(1, n + 1)):], n)),) for u in users]
    g = min(cfg.gate_users, split.num_users)
    gate_eval = session_evaluator(split.valid_history[:g], split.valid_target[:g])
    test_eval = session_evaluator(split.test_history, split.test_target)
    gate = QualityGate(cfg.gate_metric, cfg.gate_max_drop)

    emb = model.items.weight.detach().numpy().astype(np.float32)
    q, scale = quantize_rows(emb)
    fp32_bytes, int8_bytes = emb.nbytes, q.nbytes + scale.nbytes
    catalog = {
        "kind": "item_table", "num_items": data.num_items, "pad_index": 0,
        "items": ITEMS, "index": "model index i (1..num_items) is the shop item items[i - 1]; 0 is padding",
        "popularity": POPULARITY, "popularity_meaning": "training interactions per model index (0 at padding); the "
                      "fallback ranking for an empty or all-unknown history",
        "item_embeddings": {"path": EMBEDDINGS, "scale": EMBEDDING_SCALES, "dtype": "int8", "rows": int(q.shape[0]),
                            "dim": int(q.shape[1]), "quantization": "symmetric per row: embedding ≈ q * scale[row]",
                            "fp32_bytes": int(fp32_bytes), "int8_bytes": int(int8_bytes),
                            "saved_bytes": int(fp32_bytes - int8_bytes),
                            "use": "item-to-item similarity on the device (Recommender.similar)"},
        "scores_output": "scores[0, i] ranks model index i; column 0 is padding and is never recommended",
        "source": data.name,
    }
    with BundleWriter(out, name=name, version=version, task="recommendations", inputs=io.inputs,
                      outputs=io.outputs, preprocessing=SequencePreprocessing(n, 0, "left"), overwrite=True) as w:
        w.set_golden(*golden)
        w.add_file(ITEMS, "catalog", np.ascontiguousarray(data.item_ids))
        w.add_file(POPULARITY, "catalog", np.asarray(popularity, np.float32))
        w.add_file(EMBEDDINGS, "catalog", q)
        w.add_file(EMBEDDING_SCALES, "catalog", scale)
        w.catalog = catalog
        rows: list[ArtifactRow] = []
        for fmt in cfg.formats:
            say(f"{name}: fp32 {fmt}")
            art = export_artifact(w, model, samples[0], fmt, golden=golden)
            ref = evaluate_artifact(w, art, gate_eval)
            art = _record(w, art, ref, test_eval, rows, backend_for_format(fmt).name)
            if not cfg.int8:
                continue
            int8 = export_int8_gated(w, model, samples[0], fmt, calibration=calibration, golden=golden,
                                     evaluate=gate_eval, reference=ref, gate=gate,
                                     progress=lambda m, nm=name: say(f"{nm}: {m}"))
            if int8 is None:
                say(f"{name}: int8 {fmt} rejected by the gate (see manifest quality.int8_rejected)")
                continue
            _record(w, int8, dict(int8.quality), test_eval, rows, backend_for_format(fmt).name)
        w.quality = {**quality, "protocol": PROTOCOL, "gate": {"metric": gate.metric, "max_drop": gate.max_drop,
                     "evaluated_on": f"first {g} validation users, through the runtime"},
                     "int8_rejected": w.quality.get("int8_rejected", {}),
                     "artifacts_test": {r.artifact: {"recall@10": r.recall, "ndcg@10": r.ndcg} for r in rows}}
        path = w.commit()
    return path, rows, catalog


def _as_input(x: np.ndarray) -> torch.Tensor:
    # a fresh [1, N] tensor: numpy views of a new axis can carry a 0 stride, which ExecuTorch refuses
    return torch.tensor(np.asarray(x, np.int64).reshape(1, -1))


def _record(w: BundleWriter, art: Artifact, valid: dict[str, float], test_eval: Callable[[Session], dict[str, float]],
            rows: list[ArtifactRow], backend: str) -> Artifact:
    test = evaluate_artifact(w, art, test_eval)
    art = w.update_artifact(art.name, quality={"valid_gate_subset": valid, "test": test})
    size = w.manifest().artifact_bytes(art)
    recipe = (art.quantization or {}).get("recipe")
    rows.append(ArtifactRow(art.name, art.format, art.precision, backend, size, test["recall@10"], test["ndcg@10"],
                            art.parity.cosine if art.parity else None, recipe))
    return art
