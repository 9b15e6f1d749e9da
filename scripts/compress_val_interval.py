"""The 95% bootstrap interval of the grocery teacher's validation mAP@10 (per-query AP@10 over the 296 validation
shop photos, 2,000 resamples): how large a quality difference the validation split can resolve.

    .venv/bin/python scripts/compress_val_interval.py --cache /work/main/out/cache
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="out/cache")
    args = ap.parse_args(argv)
    import torch
    from edgecart.runtime.preprocess import normalise, to_model_uint8
    from edgecart.vision.demo import DEMO_CONFIG, grocery_search_data
    from edgecart.vision.metrics import full_ranking, per_query

    torch.set_num_threads(1)
    spec = importlib.util.spec_from_file_location("compress_real_models",
                                                  Path(__file__).with_name("compress_real_models.py"))
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = mod  # type: ignore[union-attr]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    teacher = mod._grocery("teacher", Path(args.cache)).model
    data = grocery_search_data(DEMO_CONFIG)
    pre = DEMO_CONFIG.teacher_preprocessing
    with torch.no_grad():
        q = teacher(torch.from_numpy(normalise(to_model_uint8(data.val.images, pre), pre))).numpy()
        g = teacher(torch.from_numpy(normalise(to_model_uint8(data.catalog.images, pre), pre))).numpy()
    ap10 = np.asarray(per_query(full_ranking(q, g), data.val.labels, data.catalog.labels)["map@10"])
    rng = np.random.default_rng(0)
    boot = [ap10[rng.integers(0, len(ap10), len(ap10))].mean() for _ in range(2000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"validation mAP@10 {ap10.mean():.4f}, 95% interval [{lo:.4f}, {hi:.4f}] over {len(ap10)} queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
