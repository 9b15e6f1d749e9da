"""Training-step cost of a recommendations student: label-only, distilled with the label and ranking terms as two
full softmaxes (``sequence_label`` + ``masked_ranking``, the build's loss before the fused term), and distilled with
the fused ``masked_label_ranking`` term — one thread, interleaved rounds, medians, ratios within the run.

    python -m edgecart.benchmarks.distill_step --out benchmarks/results/recs/distill-step

A step is the shared trainer's: the student scores every item at the batch's non-padding positions
(``edgecart.recs.train._Positions``), the loss terms, backward, an Adam step. The data are the real training windows
of each data set (histories of 50, batches of 64) and the build's 16-d one-block student; the teacher's top-10 soft
targets are drawn at random (their values do not change the cost). Writes ``distill-step.json`` and
``distill-step.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .remote_runner import cpu_model
from .stats import interleaved_times, p50_ms


def _steps(dataset: str, dim: int, batch: int, top_k: int) -> tuple[dict[str, Callable[[], Any]], dict[str, Any]]:
    """One step function per loss variant, each on its own copy of the student (same initial weights), cycling
    through the same batches."""
    import copy

    import torch
    from edgecart.compress.losses import MaskedRankingKD, SequenceLabelCE
    from edgecart.data.sequences import leave_last_out, training_windows
    from edgecart.models.sasrec import SASRec, SASRecConfig
    from edgecart.recs.config import DistillConfig
    from edgecart.recs.pipeline import _load
    from edgecart.recs.train import _Positions, loss_terms

    data = _load(dataset, 5)
    inputs, targets = training_windows(leave_last_out(data).train, 50)
    rng = np.random.default_rng(0)
    index = torch.from_numpy(rng.integers(1, data.num_items + 1, (*inputs.shape, top_k)))
    weight = torch.softmax(torch.from_numpy(rng.normal(size=(*inputs.shape, top_k)).astype(np.float32)), -1)
    x, y = torch.from_numpy(inputs), torch.from_numpy(targets)
    torch.manual_seed(0)
    base = SASRec(SASRecConfig(data.num_items, 50, dim, 1, 1, 2, 0.1))
    variants = {
        "label-only": loss_terms(None),
        "distilled, two softmaxes": (SequenceLabelCE(weight=0.5, student="logits"),
                                     MaskedRankingKD(weight=0.5, top_k=top_k, temperature=1.0, student="logits")),
        "distilled, fused term": loss_terms(DistillConfig(top_k=top_k, temperature=1.0, alpha=0.5)),
    }
    order = rng.permutation(len(inputs))
    fns: dict[str, Callable[[], Any]] = {}
    for name, terms in variants.items():
        model = _Positions(copy.deepcopy(base)).train()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        state = {"at": 0}

        def step(model=model, opt=opt, terms=terms, state=state) -> None:
            rows = torch.from_numpy(order[state["at"]:state["at"] + batch])
            state["at"] = (state["at"] + batch) % max(1, len(order) - batch)
            xb, yb = x[rows], y[rows]
            out = model(xb)
            t = {"index": index[rows], "weight": weight[rows]}
            loss = sum(term.weight * term(out[term.student], t if term.needs_teacher else None, yb)
                       for term in terms)
            opt.zero_grad()
            loss.backward()
            opt.step()

        fns[name] = step
    info = {"dataset": dataset, "items": int(data.num_items), "windows": int(len(inputs)),
            "labelled_per_batch": float((targets != 0).sum(1).mean() * batch), "terms": {
                n: [t.name for t in ts] for n, ts in variants.items()}}
    return fns, info


def measure(dataset: str, *, dim: int = 16, batch: int = 64, top_k: int = 10, reps: int = 60,
            budget_s: float = 120.0) -> dict[str, Any]:
    """Median milliseconds per step of each variant, and each one's ratio to label-only."""
    fns, info = _steps(dataset, dim, batch, top_k)
    times = interleaved_times(fns, reps, budget_s)
    p50 = {n: p50_ms(ts) for n, ts in times.items()}
    base = p50["label-only"]
    return {**info, "rounds": min(len(ts) for ts in times.values()),
            "p50_ms": p50, "vs_label_only": {n: v / base for n, v in p50.items()}}


def _markdown(rows: list[dict[str, Any]], command: str, meta: dict[str, Any]) -> str:
    lines = [f"# Distilled training step of the 16-d recommendations student ({meta['cpu']}, 1 thread)", "",
             "| data set (items) | label-only | distilled, two softmaxes | distilled, fused term | fused vs two |",
             "|---|---:|---:|---:|---:|"]
    for r in rows:
        p, v = r["p50_ms"], r["vs_label_only"]
        two, fused = p["distilled, two softmaxes"], p["distilled, fused term"]
        lines.append(f"| {r['dataset']} ({r['items']:,}) | {p['label-only']:.1f} ms | {two:.1f} ms "
                     f"({v['distilled, two softmaxes']:.2f}×) | {fused:.1f} ms ({v['distilled, fused term']:.2f}×) "
                     f"| {fused / two:.2f} |")
    lines += ["", "Medians over interleaved rounds (each variant once per round, order rotated); ratios within this "
              "run. Batches of 64 histories of 50.", "", f"`{command}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--datasets", default="movielens-100k,instacart")
    p.add_argument("--reps", type=int, default=60)
    p.add_argument("--budget-s", type=float, default=120.0, help="time limit per data set")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = [measure(d.strip(), reps=args.reps, budget_s=args.budget_s) for d in args.datasets.split(",") if d.strip()]
    meta = {"cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "pid_cores": len(os.sched_getaffinity(0))}
    command = "python -m edgecart.benchmarks.distill_step " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distill-step.json").write_text(json.dumps({"meta": meta, "command": command, "rows": rows},
                                                           indent=2) + "\n")
    (args.out / "distill-step.md").write_text(_markdown(rows, command, meta))
    print(_markdown(rows, command, meta))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
