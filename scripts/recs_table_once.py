"""Where should the recommendations student's item table live? (issue 12.3)

Exports the same SASRec student (Instacart's shape: 5,239 items, 32-d, 1 block, max_len 50; seeded random weights —
sizes and speed do not depend on training) two ways, fp32 and int8, in each format:

* ``scores``: the model outputs one score per item, the tied item table is both the input embedding and the
  output projection inside the model file (what bundles held before);
* ``user_vector, index input``: the model takes item indices (the table inside it, for the input embedding only)
  and outputs the user vector; the runtime scores it against the bundle's int8 item table;
* ``user_vector, row input`` (shipped): the runtime gathers the history's rows from the bundle's int8 item table,
  the model (the transformer only, no item table) returns the user vector, the same table scores it — the table is
  stored once, as int8, beside the model.

and reports file sizes (model, plus the int8 table for ``user_vector``) and p50 of one full recommendation (model +
scoring + top-10) on one thread, interleaved. Writes benchmarks/results/recs/table-once.{json,md}.

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_table_once.py [--formats tflite,onnx,executorch]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path("benchmarks/results/recs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--formats", default="tflite,onnx,executorch")
    p.add_argument("--items", type=int, default=5239)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--queries", type=int, default=300)
    args = p.parse_args(argv)

    import torch
    from edgecart.exporters import BundleWriter, export_artifact, golden_from_model
    from edgecart.exporters.export import ParityTolerance
    from edgecart.models.sasrec import SASRec, SASRecConfig, SASRecUserVector
    from edgecart.runtime.backends import backend_for_format
    from edgecart.runtime.search import quantize_rows, top_k
    from edgecart.runtime.session import Session
    from edgecart.threads import set_torch_threads

    set_torch_threads(1)
    torch.manual_seed(0)
    cfg = SASRecConfig(args.items, 50, args.dim, 1, 1, 2, 0.0)
    base = SASRec(cfg).eval()
    with torch.no_grad():  # a spread like a trained table's, so int8 calibration sees realistic ranges
        base.items.weight.normal_(0, 0.3)
        base.items.weight[0].zero_()
    rng = np.random.default_rng(0)
    hist = [rng.integers(1, args.items + 1, size=int(rng.integers(1, 51))) for _ in range(args.queries)]

    def pad(h: np.ndarray) -> np.ndarray:
        x = np.zeros((1, 50), np.int64)
        x[0, 50 - len(h):] = h
        return x

    calib = [(torch.tensor(pad(h)),) for h in hist[:32]]
    q, scale = quantize_rows(base.items.weight.detach().numpy())
    table = q.astype(np.float32) * scale[:, None]
    table[0] = 0.0
    loose = ParityTolerance(int8_min_cosine=0.5)
    rows, sessions = [], {}

    class IndexUserVector(torch.nn.Module):
        def __init__(self, m: SASRec) -> None:
            super().__init__()
            self.m = m

        def forward(self, history: torch.Tensor) -> torch.Tensor:
            return self.m.encode(history)[:, -1, :]

        @property
        def io_spec(self):  # noqa: ANN202
            from edgecart.runtime.manifest import IOSpec, TensorSpec

            return IOSpec((TensorSpec("history", "int64", (1, 50)),), (TensorSpec("user_vector", "float32",
                                                                                   (1, args.dim)),))

    rows_in = SASRecUserVector(base).eval()
    calib_rows = [(torch.tensor(table[c[0].numpy()]),) for c in calib]
    with tempfile.TemporaryDirectory() as tmp:
        for kind, model in (("scores", base), ("user_vector, index input", IndexUserVector(base).eval()),
                            ("user_vector, row input", rows_in)):
            cal = calib_rows if kind.endswith("row input") else calib
            io = model.io_spec
            golden = golden_from_model(model, cal[:2], io)
            slug = kind.replace(", ", "-").replace(" ", "-")
            w = BundleWriter(Path(tmp) / slug, name=f"t-{slug}", version="0", task="recommendations",
                             inputs=io.inputs, outputs=io.outputs, overwrite=True)
            w.set_golden(*golden)
            for fmt in args.formats.split(","):
                for prec in ("fp32", "int8"):
                    t0 = time.perf_counter()
                    try:
                        art = export_artifact(w, model, cal[0], fmt, precision=prec, calibration=cal,
                                              golden=golden, tolerance=loose)
                    except Exception as exc:  # a recipe that fails here is reported, not fatal
                        rows.append({"kind": kind, "format": fmt, "precision": prec, "error": str(exc)[:300]})
                        continue
                    size = w.manifest().artifact_bytes(art)
                    table_bytes = int(q.nbytes + scale.nbytes) if kind.startswith("user_vector") else 0
                    rows.append({"kind": kind, "format": fmt, "precision": prec, "model_bytes": size,
                                 "table_bytes": table_bytes, "total_bytes": size + table_bytes,
                                 "export_s": time.perf_counter() - t0,
                                 "cosine": art.parity.cosine if art.parity else None})
                    sessions[(kind, fmt, prec)] = Session(w.stage(), art, backend_for_format(fmt), threads=1)
            # keep the writer staged until timing is done
            sessions[(kind, "writer", "")] = w  # type: ignore[assignment]

        def one(key: tuple[str, str, str], h: np.ndarray) -> None:
            s = sessions[key]
            x = pad(h)
            if key[0].endswith("row input"):
                x = table[x]
            out = s.run(x)[s.outputs[0].name]
            scores = out @ table.T if key[0].startswith("user_vector") else out
            scores = scores.copy()
            scores[0, 0] = -np.inf
            scores[0, h] = -np.inf
            top_k(scores, 10)

        keys = [k for k in sessions if k[1] != "writer"]
        times = {k: [] for k in keys}
        for h in hist:  # interleaved: every artifact sees the same load
            for k in keys:
                t0 = time.perf_counter()
                one(k, h)
                times[k].append(time.perf_counter() - t0)
        for r in rows:
            k = (r["kind"], r["format"], r["precision"])
            if k in times:
                r["p50_ms"] = float(np.median(times[k]) * 1e3)
        for k, w in list(sessions.items()):
            if k[1] == "writer":
                w.abort()  # type: ignore[union-attr]
    doc = {"model": {"num_items": args.items, "dim": args.dim, "layers": 1, "max_len": 50}, "rows": rows,
           "command": "EDGECART_THREADS=1 .venv/bin/python scripts/recs_table_once.py " + " ".join(sys.argv[1:]),
           "note": "p50 of one recommendation (model + scoring + exclude-seen + top-10), 1 thread, interleaved, "
                   "measured on a shared, loaded 2-core machine"}
    md = ["| model output | format | precision | model bytes | + int8 table bytes | total bytes | p50 ms | cosine |",
          "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if "error" in r:
            md.append(f"| {r['kind']} | {r['format']} | {r['precision']} | failed: {r['error'][:80]} | | | | |")
            continue
        cos = "-" if r["cosine"] is None else f"{r['cosine']:.4f}"
        md.append(f"| {r['kind']} | {r['format']} | {r['precision']} | {r['model_bytes']} | {r['table_bytes']} | "
                  f"{r['total_bytes']} | {r.get('p50_ms', float('nan')):.3f} | {cos} |")
    md.append(f"\n{doc['note']}.\n\nCommand: `{doc['command']}`")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "table-once.json").write_text(json.dumps(doc, indent=2) + "\n")
    (RESULTS / "table-once.md").write_text("# Item table once: user vector vs in-model scores\n\n" + "\n".join(md)
                                           + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
