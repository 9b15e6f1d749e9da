"""Item sequences for next-item recommendation: id <-> index mapping, leave-last-out split, padded windows.

Index 0 is the padding slot; the shop's item ids map to indices 1..num_items in the order of ``item_ids``.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from edgecart.runtime.errors import EdgecartError

PAD = 0


class DatasetMissingError(EdgecartError, FileNotFoundError):
    """A data set's file is not installed; the message holds the one-line install command."""


def locate_package_file(dist: str, rel: str, install: str) -> Path:
    """Find ``rel`` among the files of the installed distribution ``dist`` without importing it."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise DatasetMissingError(f"the {dist!r} data package is not installed; install it with: {install}") from None
    for f in files:
        if str(f).replace("\\", "/") == rel:
            p = Path(str(f.locate()))
            if p.is_file():
                return p
            break
    raise DatasetMissingError(f"{dist} is installed but {rel} is missing; reinstall it with: {install}")


@dataclass(frozen=True)
class SequenceData:
    """Per-user chronological item sequences as indices (1..num_items) plus the shop's ids for each index."""

    name: str
    item_ids: np.ndarray  # [num_items] shop ids; item_ids[i - 1] is the id of index i
    user_ids: np.ndarray  # [num_users]
    sequences: tuple[np.ndarray, ...]  # per user, int64 indices in time order
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.user_ids) != len(self.sequences):
            raise ValueError(f"{len(self.user_ids)} users but {len(self.sequences)} sequences")
        n = len(self.item_ids)
        for s in self.sequences:
            if s.size and (s.min() < 1 or s.max() > n):
                raise ValueError(f"sequence indices must lie in 1..{n} (0 is padding)")

    @property
    def num_items(self) -> int:
        return int(len(self.item_ids))

    @property
    def num_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    def describe(self) -> str:
        lens = np.array([len(s) for s in self.sequences])
        return (f"{self.name}: {len(self.sequences)} users, {self.num_items} items, {self.num_interactions} "
                f"interactions, sequence length median {int(np.median(lens))} (min {lens.min()}, max {lens.max()})")


def build_sequences(name: str, users: np.ndarray, items: np.ndarray, order: list[np.ndarray], *,
                    min_item_count: int = 5, min_length: int = 3, source: str = "") -> SequenceData:
    """Group interactions into per-user sequences sorted by the keys in ``order`` (most significant first).

    Items seen fewer than ``min_item_count`` times are dropped (one pass, as in the SASRec paper's preprocessing);
    users left with fewer than ``min_length`` items are dropped (leave-last-out needs train, validation and test).
    """
    if min_item_count < 1 or min_length < 1:
        raise ValueError("min_item_count and min_length must be >= 1")
    users, items = np.asarray(users), np.asarray(items)
    ids, counts = np.unique(items, return_counts=True)
    keep_ids = ids[counts >= min_item_count]
    keep = np.isin(items, keep_ids)
    users, items = users[keep], items[keep]
    order = [np.asarray(k)[keep] for k in order]
    # np.lexsort sorts by its last key first: users, then the order keys, then the row (stable)
    idx = np.lexsort((np.arange(len(users)), *reversed(order), users))
    users, items = users[idx], items[idx]
    index = np.searchsorted(keep_ids, items).astype(np.int64) + 1
    bounds = np.flatnonzero(np.diff(users)) + 1
    seqs = np.split(index, bounds)
    uids = users[np.concatenate([[0], bounds])] if len(users) else users
    chosen = [i for i, s in enumerate(seqs) if len(s) >= min_length]
    # items used only by dropped users stay in the table: harmless, and the mapping stays a plain sort of the ids
    return SequenceData(name, keep_ids, np.asarray(uids)[chosen], tuple(seqs[i] for i in chosen), source)


@dataclass(frozen=True)
class Split:
    """Leave-last-out: per user, train on all but the last two items, validate on the second-to-last, test on the
    last. ``valid_history[u]`` is the train part; ``test_history[u]`` adds the validation item."""

    train: tuple[np.ndarray, ...]
    valid_history: tuple[np.ndarray, ...]
    valid_target: np.ndarray
    test_history: tuple[np.ndarray, ...]
    test_target: np.ndarray
    num_items: int

    @property
    def num_users(self) -> int:
        return len(self.train)


def leave_last_out(data: SequenceData) -> Split:
    """Split every sequence: last item = test target, second-to-last = validation target, the rest = training."""
    short = [i for i, s in enumerate(data.sequences) if len(s) < 3]
    if short:
        raise ValueError(f"{len(short)} sequences are shorter than 3 items; build them with min_length >= 3")
    train = tuple(s[:-2] for s in data.sequences)
    return Split(train=train, valid_history=train, valid_target=np.array([s[-2] for s in data.sequences], np.int64),
                 test_history=tuple(s[:-1] for s in data.sequences),
                 test_target=np.array([s[-1] for s in data.sequences], np.int64), num_items=data.num_items)


def left_pad(history: np.ndarray, max_len: int) -> np.ndarray:
    """The last ``max_len`` items of ``history`` as int64 [max_len], left-padded with 0 (most recent last)."""
    h = np.asarray(history, np.int64)[-max_len:] if max_len > 0 else np.zeros(0, np.int64)
    out = np.zeros(max_len, np.int64)
    if h.size:
        out[max_len - h.size:] = h
    return out


def pad_batch(histories: tuple[np.ndarray, ...] | list[np.ndarray], max_len: int) -> np.ndarray:
    """Stack left-padded histories into int64 [len(histories), max_len]."""
    return np.stack([left_pad(h, max_len) for h in histories]) if len(histories) else np.zeros((0, max_len), np.int64)


def training_windows(train: tuple[np.ndarray, ...], max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut each training sequence into windows of ``max_len + 1`` items from the end backwards (non-overlapping
    targets), left-padded. Returns ``inputs`` and ``targets`` int64 [W, max_len]; target 0 = no loss there."""
    ins, outs = [], []
    for s in train:
        end = len(s)
        while end >= 2:
            chunk = s[max(0, end - max_len - 1):end]
            ins.append(left_pad(chunk[:-1], max_len))
            outs.append(left_pad(chunk[1:], max_len))
            end -= max_len
    if not ins:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(ins), np.stack(outs)


def drop_copies(train: tuple[np.ndarray, ...], copies: int, drop: float, seed: int = 0) -> tuple[np.ndarray, ...]:
    """``copies`` altered copies of every training sequence (all of the first copy's sequences first): each item
    dropped with probability ``drop``, the order kept; where fewer than 2 items would survive, the last 2 are kept
    (a window needs an input and a target). The same ``seed`` gives the same copies."""
    if copies < 0 or not 0 < drop < 1:
        raise ValueError(f"copies must be >= 0 and drop in (0, 1), got {copies} and {drop}")
    rng = np.random.default_rng(1_000_003 + seed)
    out = []
    for _ in range(copies):
        for s in train:
            s = np.asarray(s, np.int64)
            keep = rng.random(len(s)) >= drop
            if keep.sum() < 2:
                keep[-2:] = True
            out.append(s[keep])
    return tuple(out)


def future_targets(train: tuple[np.ndarray, ...], max_len: int, window: int,
                   decay: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """For the windows of :func:`training_windows`: at each position the next ``window`` items of the user's
    training sequence (the position's own target first) and their weights ``decay ** k``, normalised to sum to 1;
    positions past the sequence's end get index 0 and weight 0. Returns ``index`` int64 and ``weight`` float32
    [W, max_len, window]. Many logs record several events in the same second in no meaningful order (MovieLens:
    three quarters of the ratings share their second with another of the same user), so the next few items are all
    fair targets of a position."""
    if window < 1 or not 0 < decay <= 1:
        raise ValueError("window >= 1 and 0 < decay <= 1")
    idx, wts = [], []
    base = decay ** np.arange(window)
    for s in train:
        s = np.asarray(s, np.int64)
        end = len(s)
        while end >= 2:
            start = max(0, end - max_len - 1)
            pos = np.arange(start + 1, end)  # the targets of the window, in order
            ahead = pos[:, None] + np.arange(window)[None, :]
            ok = ahead < len(s)
            i = np.where(ok, s[np.minimum(ahead, len(s) - 1)], 0)
            w = np.where(ok, base[None, :], 0.0)
            w = w / w.sum(1, keepdims=True)
            n = len(pos)
            ii, ww = np.zeros((max_len, window), np.int64), np.zeros((max_len, window), np.float32)
            ii[max_len - n:], ww[max_len - n:] = i, w
            idx.append(ii)
            wts.append(ww)
            end -= max_len
    if not idx:
        return np.zeros((0, max_len, window), np.int64), np.zeros((0, max_len, window), np.float32)
    return np.stack(idx), np.stack(wts)
