"""The demo's teachers, shipped with the repository under ``data/teachers``.

``make demo`` distils, compresses and exports; training its three teachers (the grocery EfficientNet-Lite0
fine-tune, the MovieLens-100K SASRec members, the MiniLM embeddings of the reviews) is most of a first run on a slow
machine. The repository carries those cache entries, made by this code on the bundled data (provenance in
``MANIFEST.json``), so a first run starts from them; ``edgecart demo --train-teachers`` trains them instead.

Every shipped file is listed in ``MANIFEST.json`` with its size and SHA-256 and checked before anything is copied:
a changed, missing or unlisted file stops the demo with :class:`ShippedTeachersError`. Entries are copied into the
run's own cache (never over an entry already there); the pipelines then find them under their usual keys. A
configuration change that moves a key makes the pipeline miss the entry and train, as without shipped teachers;
:func:`demo_teacher_entries` lists the entries the demo's current configuration asks for, and the tests check that
the shipped set holds them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from edgecart.cache import write_atomic
from edgecart.runtime.bundle import sha256_file
from edgecart.runtime.errors import EdgecartError

MANIFEST = "MANIFEST.json"


class ShippedTeachersError(EdgecartError):
    """The shipped teachers cannot be used as they are."""


def shipped_dir() -> Path | None:
    """``$EDGECART_TEACHERS`` when set, else the repository's ``data/teachers`` (the first folder above this package
    holding a MANIFEST.json), else None (an installed package without the repository: the demo trains)."""
    env = os.environ.get("EDGECART_TEACHERS")
    if env:
        return Path(env)
    for p in Path(__file__).resolve().parents[:3]:
        if (p / "data" / "teachers" / MANIFEST).is_file():
            return p / "data" / "teachers"
    return None


def verify(root: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file of ``root``'s manifest (size, SHA-256) and that no other file is there; returns the
    manifest."""
    root = Path(root)
    fix = ("restore data/teachers from the repository (git checkout -- data/teachers) or run the demo with "
           "--train-teachers")
    try:
        manifest = json.loads((root / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ShippedTeachersError(f"{root / MANIFEST}: unreadable ({exc}); {fix}") from None
    for rel, want in files.items():
        p = root / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise ShippedTeachersError(f"{root / MANIFEST}: unsafe path {rel!r}; {fix}")
        if not p.is_file():
            raise ShippedTeachersError(f"shipped teacher file {p} is missing; {fix}")
        if p.stat().st_size != want["bytes"] or sha256_file(p) != want["sha256"]:
            raise ShippedTeachersError(f"shipped teacher file {p} does not match its SHA-256 in {MANIFEST}; {fix}")
    listed = set(files) | {MANIFEST}
    extra = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()
                   and str(p.relative_to(root)) not in listed)
    if extra:
        raise ShippedTeachersError(f"{root}: files not listed in {MANIFEST}: {', '.join(extra)}; {fix}")
    return manifest


def seed_cache(cache: str | os.PathLike[str], root: str | os.PathLike[str] | None = None,
               namespaces: tuple[str, ...] | None = None) -> list[str]:
    """Verify the shipped teachers, then copy each into ``cache`` (``<namespace>/<entry>``; only ``namespaces`` when
    given) unless the cache holds that file already; returns the files copied. No shipped folder: nothing copied."""
    root = Path(root) if root is not None else shipped_dir()
    if root is None:
        return []
    manifest = verify(root)
    copied = []
    for rel in sorted(manifest["files"]):
        dest = Path(cache) / rel
        if dest.exists() or (namespaces is not None and Path(rel).parts[0] not in namespaces):
            continue
        with open(root / rel, "rb") as src:
            write_atomic(dest, lambda f, src=src: shutil.copyfileobj(src, f))
        copied.append(rel)
    return copied


def demo_teacher_entries() -> dict[str, list[str]]:
    """The cache entries (``<namespace>/<name>-<key>``, no suffix) the demo's teachers use with the current code and
    configuration, by task. Recommendations: the first member at every width validation may choose from, and every
    member at each width (the build trains the others at the chosen width only)."""
    from edgecart.recs.pipeline import DEMO_CONFIGS, _load
    from edgecart.recs.teacher import member_keys
    from edgecart.text.pipeline import DEMO_CONFIG as TEXT_CONFIG
    from edgecart.text.pipeline import load_data, teacher_keys
    from edgecart.vision.demo import DEMO_CONFIG as VISION_CONFIG
    from edgecart.vision.demo import grocery_search_data
    from edgecart.vision.pipeline import embeddings_key, teacher_key

    from .cli.demo_cmd import DEMO_RECS_DATASETS

    data = grocery_search_data(VISION_CONFIG)
    tkey = teacher_key(data, VISION_CONFIG)
    out = {"vision": [f"vision/teacher-{tkey}", f"vision/teacher-embeddings-{embeddings_key(data, 'teacher', tkey)}"]}
    out["recs"] = []
    for name in DEMO_RECS_DATASETS:
        cfg = DEMO_CONFIGS[name]
        seq = _load(name, cfg.min_item_count)
        out["recs"] += [f"recs/{seq.name}-teacher-{k}" for keys in member_keys(seq, cfg).values() for k in keys]
    split, grocery = load_data(TEXT_CONFIG)
    out["text"] = [f"text/teacher-{part}-{k}" for part, k in teacher_keys(TEXT_CONFIG, split, grocery).items()]
    return out


__all__ = ["MANIFEST", "ShippedTeachersError", "demo_teacher_entries", "seed_cache", "shipped_dir", "verify"]
