"""Round 6 of the recommendations studies (issue 12): what the Instacart SASRecs are up against.

    EDGECART_THREADS=1 .venv/bin/python scripts/recs_round6.py buyagain --dataset instacart \\
        I-T32e30-s0+I-T32e30-s1+I-T32e30-s2+I-T32e30-s3 I-S24-kd10e-s0 --pairs I-S24-kd10e-s0:I-S24-label30-s0

On Instacart the next item is mostly one the user bought before (test NDCG@10 of every SASRec drops from about
0.11 to under 0.01 when seen items are excluded), and the SASRecs see only their last ``max_len`` (50) items of
histories 224 items long on average. ``buyagain`` scores the parameter-free "buy it again" baseline
(:class:`edgecart.runtime.buy_again.BuyAgain`, as a bundle ships it: the user's own items by decayed count over the
whole history; the decay chosen on validation), then each saved fit or ensemble alone and blended with it
(``log p_model + w log p_again``, ``w`` chosen on validation, 0 allowed), with paired 95% bootstrap intervals over
test users. ``--pairs A:B`` compares the blends of two sides (each at its own weight). Saved fits come from
``recs_round3.py fit`` (``--scores``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from recs_round3 import add_data_options, scores_of  # noqa: E402

#: decays of the buy-again counts and blend weights tried on validation
DECAYS = (1.0, 0.99, 0.97, 0.95, 0.9)
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def _command() -> str:
    return "EDGECART_THREADS=1 .venv/bin/python " + " ".join(["scripts/recs_round6.py", *sys.argv[1:]])


def _fmt(d: dict) -> str:
    return f"{d['diff']:+.4f} [{d['diff_lo']:+.4f}, {d['diff_hi']:+.4f}] ratio {d['ratio']:.3f} " \
           f"[{d['ratio_lo']:.3f}, {d['ratio_hi']:.3f}]"


def _pick(candidates: dict, valid_of) -> tuple:
    """The candidate key with the highest validation NDCG@10 (ties: the first listed), with that figure."""
    best = max(candidates, key=lambda k: (valid_of(candidates[k]), -list(candidates).index(k)))
    return best, valid_of(candidates[best])


def buyagain(args: argparse.Namespace) -> int:
    from edgecart.data.sequences import leave_last_out
    from edgecart.recs.metrics import paired_bootstrap, target_ranks, user_ndcg
    from edgecart.recs.pipeline import _load
    from edgecart.runtime.buy_again import BuyAgain

    data = _load(args.dataset, 5)
    split = leave_last_out(data)
    hist = {"valid": split.valid_history, "test": split.test_history}
    target = {"valid": split.valid_target, "test": split.test_target}

    def ndcg(scores: np.ndarray, which: str) -> np.ndarray:
        return user_ndcg(target_ranks(scores, target[which]))

    print(f"$ {_command()}")
    cols = data.num_items + 1
    priors = {d: BuyAgain(1.0, decay=d) for d in DECAYS}
    decay, v = _pick(priors, lambda p: ndcg(p.log_probs(hist["valid"], cols), "valid").mean())
    u_prior = ndcg(priors[decay].log_probs(hist["test"], cols), "test")
    print(f"buy-again, decay {decay} (valid among {DECAYS}): valid {v:.4f} test {u_prior.mean():.4f}")
    blended = {}
    for side in dict.fromkeys([*args.sides, *(s for p in args.pairs for s in p.split(":"))]):
        sv, st = scores_of(side, "valid", args.scores), scores_of(side, "test", args.scores)
        blends = {w: BuyAgain(w, decay=decay) for w in WEIGHTS}
        w, vb = _pick(blends, lambda b, sv=sv: ndcg(b.blend_scores(sv, hist["valid"]), "valid").mean())
        alone, both = ndcg(st, "test"), ndcg(blends[w].blend_scores(st, hist["test"]), "test")
        blended[side] = both
        print(f"{side}: alone valid {ndcg(sv, 'valid').mean():.4f} test {alone.mean():.4f}; + buy-again (w {w}) "
              f"valid {vb:.4f} test {both.mean():.4f}\n"
              f"  buy-again - alone {_fmt(paired_bootstrap(u_prior, alone))}\n"
              f"  blend - alone {_fmt(paired_bootstrap(both, alone))}\n"
              f"  blend - buy-again {_fmt(paired_bootstrap(both, u_prior))}", flush=True)
    for pair in args.pairs:
        a, b = pair.split(":")
        print(f"blends {a} vs {b}: {_fmt(paired_bootstrap(blended[a], blended[b]))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("buyagain", help="the buy-again baseline, alone and blended with saved fits")
    add_data_options(b, "instacart", tag=False)
    b.add_argument("sides", nargs="*", help="saved fits: a tag, or '+'-joined tags (an ensemble)")
    b.add_argument("--pairs", nargs="*", default=[], help="A:B: the blend of A against the blend of B")
    args = p.parse_args(argv)
    return buyagain(args)


if __name__ == "__main__":
    sys.exit(main())
