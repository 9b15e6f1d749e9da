"""Round 23's side look (validation only): rank MovieLens-100K's unseen items by how often other users rated them
in the days before the user's last training rating, and read NDCG@10 on the validation item.

Run: .venv/bin/python benchmarks/results/recs/round23/timepop.py
"""

import numpy as np
from edgecart.data.movielens import load_movielens_100k, movielens_path
from edgecart.data.sequences import leave_last_out


def _ndcg(scores: np.ndarray, target: int, seen: np.ndarray) -> float:
    s = scores.copy()
    s[0] = -np.inf
    s[seen] = -np.inf
    rank = int((s > s[target]).sum())
    return 1 / np.log2(rank + 2) if rank < 10 else 0.0


def main() -> None:
    raw = np.loadtxt(movielens_path(), delimiter="\t", skiprows=1, usecols=(0, 1, 3), dtype=np.int64)
    users, items, ts = raw[:, 0], raw[:, 1], raw[:, 2]
    data = load_movielens_100k()
    split = leave_last_out(data)
    # the loader's filtering and order, with the timestamps kept alongside
    ids, counts = np.unique(items, return_counts=True)
    keep_ids = ids[counts >= 5]
    keep = np.isin(items, keep_ids)
    users, items, ts = users[keep], items[keep], ts[keep]
    idx = np.lexsort((np.arange(len(users)), ts, users))
    users, items, ts = users[idx], items[idx], ts[idx]
    bounds = np.flatnonzero(np.diff(users)) + 1
    seqs = np.split(np.searchsorted(keep_ids, items) + 1, bounds)
    times = np.split(ts, bounds)
    assert len(seqs) == len(data.sequences) and all((a == b).all() for a, b in zip(seqs, data.sequences))
    n = data.num_items
    tr_items = np.concatenate([s[:-2] for s in seqs])
    tr_ts = np.concatenate([t[:-2] for t in times])
    order = np.argsort(tr_ts, kind="stable")
    tr_items, tr_ts = tr_items[order], tr_ts[order]
    overall = np.bincount(tr_items, minlength=n + 1).astype(float)
    for days in (1, 3, 7, 14, 30, 60, None):
        res = []
        for u in range(len(seqs)):
            now = times[u][-3]  # the last training rating's time: known when recommending
            lo = 0 if days is None else np.searchsorted(tr_ts, now - days * 86400, "left")
            hi = np.searchsorted(tr_ts, now, "right")
            recent = np.bincount(tr_items[lo:hi], minlength=n + 1).astype(float)
            res.append(_ndcg(recent + 1e-3 * overall, split.valid_target[u], split.valid_history[u]))
        print(f"window {days or 'all'} days: validation NDCG@10 (seen excluded) {np.mean(res):.4f}")


if __name__ == "__main__":
    main()
