"""Write a ``recommendations`` bundle: the student's user-vector model in every format (fp32, and int8 behind a
quality gate evaluated through the runtime), the shop's item ids, popularity for cold starts, the int8 item table
(rows + per-row scales) that scores the user vector — stored once, outside the model files, so it can be updated
without re-export — optional item metadata, and the quality of every artifact on the test targets measured through
the runtime (model + int8 table, as on a device)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from edgecart.data.sequences import SequenceData, Split, left_pad
from edgecart.exporters import BundleWriter, QATData, QualityGate, golden_from_model
from edgecart.exporters.gate import evaluate_artifact, export_formats_gated
from edgecart.models.sasrec import SASRec, SASRecUserVector
from edgecart.runtime.buy_again import BuyAgain
from edgecart.runtime.item_to_item import ItemToItem
from edgecart.runtime.manifest import Artifact, SequencePreprocessing
from edgecart.runtime.recommender import USER_VECTOR, ItemTable, rerank
from edgecart.runtime.search import quantize_rows
from edgecart.runtime.session import Session

from .config import RecsConfig
from .metrics import PROTOCOL, evaluate_scores

ITEMS = "catalog/items.npy"
POPULARITY = "catalog/popularity.npy"
EMBEDDINGS = "catalog/item_embeddings.int8.npy"
EMBEDDING_SCALES = "catalog/item_embeddings.scale.npy"
METADATA = "catalog/items.json"
ITEM_TO_ITEM = {"indptr": "catalog/item_to_item.indptr.npy", "items": "catalog/item_to_item.items.npy",
                "weights": "catalog/item_to_item.weights.npy"}


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
    ndcg_unseen: float | None = None  # with exclude_seen=True, the runtime's default
    p50_ms: float | None = None  # one Recommender.recommend call (model + int8 table + top-10)


def item_table(model: SASRec, popularity: np.ndarray, item_ids: np.ndarray) -> ItemTable:
    """The int8 item table (per-row symmetric scales) of ``model``'s item embeddings, as the runtime reads it."""
    q, scale = quantize_rows(model.items.weight.detach().numpy().astype(np.float32))
    available = np.ones(len(item_ids) + 1, bool)
    available[0] = False
    return ItemTable(np.asarray(item_ids), q, scale, np.asarray(popularity, np.float64), available, len(item_ids))


def session_scores(session: Session, histories: tuple[np.ndarray, ...] | list[np.ndarray],
                   table: ItemTable | None = None) -> np.ndarray:
    """Scores [U, num_items + 1] from a runtime session, one [1, N] query per history (as on a device); a user-vector
    model's vectors are scored against ``table``."""
    n = session.inputs[0].shape[1]
    name = session.outputs[0].name
    if table is None or session.inputs[0].dtype != "float32":
        rows = np.stack([session.run(left_pad(h, n)[None, :])[name][0] for h in histories]).astype(np.float32)
    else:  # the embeddings of the history, gathered from the int8 table, as the runtime does
        rows = np.stack([session.run(table.embed(left_pad(h, n)[None]))[name][0] for h in histories])
    if table is None:
        return rows.astype(np.float32)
    return table.scores(rows)


def session_evaluator(histories: tuple[np.ndarray, ...] | list[np.ndarray], targets: np.ndarray, k: int = 10,
                      table: ItemTable | None = None, exclude_seen_too: bool = False,
                      item_to_item: ItemToItem | None = None,
                      buy_again: BuyAgain | None = None) -> Callable[[Session], dict[str, float]]:
    """A function Session -> {recall@k, ndcg@k, users} for the exporters' quality gate; with ``exclude_seen_too``
    also ``recall@k_unseen`` / ``ndcg@k_unseen`` with each user's history scored out (the runtime's default
    without a buy-again prior); with ``item_to_item`` and ``buy_again`` the scores are blended with them, as the
    runtime does for a bundle that carries them."""
    def evaluate(session: Session) -> dict[str, float]:
        scores = rerank(session_scores(session, histories, table), histories, item_to_item, buy_again)
        out = evaluate_scores(scores, targets, k)
        if exclude_seen_too:
            unseen = evaluate_scores(scores, targets, k, exclude=histories)
            out |= {f"recall@{k}_unseen": unseen[f"recall@{k}"], f"ndcg@{k}_unseen": unseen[f"ndcg@{k}"]}
        return out

    return evaluate


def write_bundle(model: SASRec, data: SequenceData, split: Split, cfg: RecsConfig, out: Path, *,
                 popularity: np.ndarray, quality: dict[str, Any], name: str, version: str = "0.1.0",
                 metadata: list[dict[str, Any]] | None = None, item_to_item: ItemToItem | None = None,
                 buy_again: BuyAgain | None = None,
                 progress: Callable[[str], None] | None = None) -> tuple[Path, list[ArtifactRow], dict[str, Any]]:
    """Export ``model`` into a bundle at ``out``; returns (path, one row per kept artifact, catalog description).

    ``metadata``: optional per-item records (names, categories, ...; one per item, in item order) carried into
    ``catalog/items.json``; ``item_to_item``: the co-occurrence table and blend weight the runtime mixes with the
    model's scores (the gate and every figure are measured with it); ``buy_again``: the repeat-purchase prior the
    runtime adds after that (likewise measured with it; ``None`` or weight 0: none shipped)."""
    from edgecart.runtime.backends import backend_for_format

    say = progress or (lambda _m: None)
    model = model.eval()
    n = model.cfg.max_len
    table = item_table(model, popularity, data.item_ids)
    if metadata is not None and len(metadata) != data.num_items:
        raise ValueError(f"metadata has {len(metadata)} records for {data.num_items} items")
    model = SASRecUserVector(model).eval()
    io = model.io_spec
    rng = np.random.default_rng(0)
    lengths = [n, max(1, n // 2), min(3, n), 1]
    golden_x = [left_pad(split.test_history[i][-lengths[i % 4]:], n)
                for i in range(min(cfg.golden_samples, split.num_users))]
    samples = [(_as_input(table, x),) for x in golden_x]
    golden = golden_from_model(model, samples, io)
    users = rng.choice(split.num_users, size=cfg.calibration_samples, replace=split.num_users < cfg.calibration_samples)
    calibration = [(_as_input(table, left_pad(split.valid_history[u][-int(rng.integers(1, n + 1)):], n)),)
                   for u in users]
    g = min(cfg.gate_users, split.num_users)
    if item_to_item is not None and item_to_item.rows != data.num_items + 1:
        raise ValueError(f"item_to_item has {item_to_item.rows} rows for {data.num_items} items (+1 padding)")
    if buy_again is not None and not buy_again.weight:
        buy_again = None
    gate_eval = session_evaluator(split.valid_history[:g], split.valid_target[:g], table=table,
                                  item_to_item=item_to_item, buy_again=buy_again)
    test_eval = session_evaluator(split.test_history, split.test_target, table=table, exclude_seen_too=True,
                                  item_to_item=item_to_item, buy_again=buy_again)
    gate = QualityGate(cfg.gate_metric, cfg.gate_max_drop)

    q, scale = table.q, table.scales
    assert q is not None and scale is not None
    fp32_bytes, int8_bytes = q.size * 4, q.nbytes + scale.nbytes
    catalog = {
        "kind": "item_table", "scoring": USER_VECTOR, "num_items": data.num_items, "model_items": data.num_items,
        "pad_index": 0,
        "items": ITEMS, "index": "model index i (1..num_items) is the shop item items[i - 1]; 0 is padding",
        "popularity": POPULARITY, "popularity_meaning": "training interactions per model index (0 at padding); the "
                      "fallback ranking for an empty or all-unknown history",
        "item_embeddings": {"path": EMBEDDINGS, "scale": EMBEDDING_SCALES, "dtype": "int8", "rows": int(q.shape[0]),
                            "dim": int(q.shape[1]), "quantization": "symmetric per row: embedding ≈ q * scale[row]",
                            "fp32_bytes": int(fp32_bytes), "int8_bytes": int(int8_bytes),
                            "saved_bytes": int(fp32_bytes - int8_bytes),
                            "use": "scores every item: score[i] = user_vector · q[i] * scale[i] (row 0 is padding, "
                                   "never recommended); also item-to-item similarity (Recommender.similar)"},
        "user_vector_output": "the model's output; the runtime scores it against item_embeddings",
        "source": data.name,
    }
    if metadata is not None:
        catalog["metadata"] = METADATA
    if item_to_item is not None:
        catalog["item_to_item"] = item_to_item.describe(ITEM_TO_ITEM)
    if buy_again is not None:
        catalog["buy_again"] = buy_again.describe()
    with BundleWriter(out, name=name, version=version, task="recommendations", inputs=io.inputs,
                      outputs=io.outputs, preprocessing=SequencePreprocessing(n, 0, "left"), overwrite=True) as w:
        w.set_golden(*golden)
        w.add_file(ITEMS, "catalog", np.ascontiguousarray(data.item_ids))
        w.add_file(POPULARITY, "catalog", np.asarray(popularity, np.float32))
        w.add_file(EMBEDDINGS, "catalog", q)
        w.add_file(EMBEDDING_SCALES, "catalog", scale)
        if item_to_item is not None:
            w.add_file(ITEM_TO_ITEM["indptr"], "catalog", item_to_item.indptr.astype(np.int64))
            w.add_file(ITEM_TO_ITEM["items"], "catalog", item_to_item.items.astype(np.int32))
            w.add_file(ITEM_TO_ITEM["weights"], "catalog", item_to_item.weights.astype(np.float32))
        if metadata is not None:
            w.add_file(METADATA, "catalog", json.dumps({"ids": [_plain_id(v) for v in data.item_ids.tolist()],
                                                        "records": metadata}, ensure_ascii=False).encode("utf-8"))
        w.catalog = catalog
        rows: list[ArtifactRow] = []

        def record(art: Artifact, valid: dict[str, float]) -> Artifact:
            return _record(w, art, valid, test_eval, rows, backend_for_format(art.format).name, data, split)

        # the QAT fallback: fine-tuned on training histories (random prefixes) of users outside the gate's, its step
        # picked on the gate's validation users
        pool = np.arange(g, split.num_users) if split.num_users - g >= 2 else np.arange(split.num_users)
        qat_users = rng.choice(pool, size=min(512, len(pool)), replace=False)
        qat_data = QATData([(_as_input(table, left_pad(split.train[u][-int(rng.integers(1, n + 1)):], n)),)
                            for u in qat_users],
                           [(_as_input(table, left_pad(h, n)),) for h in split.valid_history[:g]],
                           source="training histories (random prefixes); step picked on the gate's validation users")
        export_formats_gated(w, model, samples[0], cfg.formats, golden=golden, evaluate=gate_eval, int8=cfg.int8,
                             gate=gate, calibration=calibration, record=record, qat_data=qat_data, progress=say)
        w.quality = {**quality, "protocol": PROTOCOL, "gate": {"metric": gate.metric, "max_drop": gate.max_drop,
                     "evaluated_on": f"first {g} validation users, through the runtime"},
                     "int8_rejected": w.quality.get("int8_rejected", {}),
                     "artifacts_test": {r.artifact: {"recall@10": r.recall, "ndcg@10": r.ndcg} for r in rows}}
        path = w.commit()
    return path, rows, catalog


def _plain_id(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _as_input(table: ItemTable, x: np.ndarray) -> torch.Tensor:
    # a fresh [1, N, dim] tensor: numpy views of a new axis can carry a 0 stride, which ExecuTorch refuses
    rows = table.embed(np.asarray(x, np.int64).reshape(1, -1))
    return torch.tensor(rows.reshape(-1)).reshape(rows.shape).contiguous()


def _record(w: BundleWriter, art: Artifact, valid: dict[str, float], test_eval: Callable[[Session], dict[str, float]],
            rows: list[ArtifactRow], backend: str, data: SequenceData, split: Split) -> Artifact:
    test = evaluate_artifact(w, art, test_eval)
    art = w.update_artifact(art.name, quality={"valid_gate_subset": valid, "test": test})
    size = w.manifest().artifact_bytes(art)
    recipe = (art.quantization or {}).get("recipe")
    ms = recommend_p50_ms(w, art, data, split)
    rows.append(ArtifactRow(art.name, art.format, art.precision, backend, size, test["recall@10"], test["ndcg@10"],
                            art.parity.cosine if art.parity else None, recipe, test.get("ndcg@10_unseen"), ms))
    return art


def recommend_p50_ms(w: BundleWriter, art: Artifact, data: SequenceData, split: Split, queries: int = 60) -> float:
    """p50 ms of one ``Recommender.recommend(history, k=10)`` on the staged bundle (shop ids in, ids out)."""
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(w.stage(), backend=backend_for_format(art.format).name, artifact=art.name, threads=1)
    hist = [data.item_ids[h[-rec.max_len:] - 1].tolist() for h in split.test_history[:queries]]
    rec.recommend(hist[0], k=10)
    return median_recommend_ms(rec, hist)


def median_recommend_ms(rec: Any, histories: Sequence[Sequence[Any]], k: int = 10) -> float:
    """Median wall time of one ``rec.recommend(history, k)`` call over ``histories``, in milliseconds."""
    import time

    times = []
    for h in histories:
        t0 = time.perf_counter()
        rec.recommend(h, k=k)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)
