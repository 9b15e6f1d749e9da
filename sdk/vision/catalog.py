"""Catalog updates without re-export: add, remove or update products of an image-search bundle.

New pictures are embedded with the bundle's own model through the runtime (an :mod:`edgecart.runtime` session of its
fp32 artifact, preprocessing from the manifest), and a NEW bundle version is written with
:class:`~edgecart.exporters.BundleWriter`: the models, golden data and their hashes are carried over byte for byte,
the catalog files, the manifest and its hashes are rewritten, the version is bumped and the result is verified.
Writing over the input bundle replaces it atomically (the writer stages beside it and renames on commit).

A manifest signature does not survive the update (the manifest changes): sign the new version again. What the
catalog does not change is carried over: the backend order measured by ``edgecart prefer`` (``backend_preference``:
it ranks the models, which stay the same). An approximate (IVF) index is built again over the new catalog with the
settings its manifest entry records (:func:`edgecart.runtime.index.rebuild_index`); one that cannot be rebuilt is
dropped, and a note says so (``CatalogUpdate.notes``; on stderr without a ``progress`` callback).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.runtime.archive import refuse_output_inside
from edgecart.runtime.errors import BundleError, EdgecartError

ACTIONS = ("add", "remove", "update")


class CatalogUpdateError(EdgecartError, ValueError):
    """A catalog update cannot be applied (unknown or duplicate ids, a bundle without an image catalog, ...)."""


@dataclass(frozen=True)
class CatalogUpdate:
    """What an update did: the new bundle, its version, the ids added / removed / updated, skipped pictures."""

    path: Path
    version: str
    items: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # e.g. an approximate index that could not be rebuilt and was dropped


def bump_version(version: str) -> str:
    """``1.2.3`` -> ``1.2.4``; a version whose last dot-part is not a number gets ``.1`` appended."""
    head, _, last = version.rpartition(".")
    if last.isdigit():
        return f"{head}.{int(last) + 1}" if head else str(int(last) + 1)
    return f"{version}.1"


def ids_from(images: str | os.PathLike[str] | None = None, catalog: str | os.PathLike[str] | None = None,
             ids: Sequence[str] | None = None) -> list[str]:
    """Item ids named by a folder (its pictures' relative paths), a CSV (its id column) or a list."""
    from edgecart.data.image_folder import CSV_COLUMNS, ImageFolderError

    if ids is not None:
        return [str(i) for i in ids]
    if images is not None:
        from edgecart.data.image_folder import picture_files

        base = Path(images)
        if not base.is_dir():
            raise ImageFolderError(f"{base}: no such folder")
        return [p.relative_to(base).as_posix() for c in sorted(base.iterdir())
                if c.is_dir() and not c.name.startswith(".") for p in picture_files(c, base)[0]]
    if catalog is not None:
        from edgecart.data.image_folder import read_csv_rows

        p = Path(catalog)
        if not p.is_file():
            raise ImageFolderError(f"{p}: no such catalog CSV")
        header, rows = read_csv_rows(p)
        col = next((n for n in CSV_COLUMNS["id"] if n in header), None)
        if col is None:
            raise ImageFolderError(f"{p}: missing column 'id' (accepted names: {', '.join(CSV_COLUMNS['id'])})")
        return [r.get(col, "") for r in rows if r.get(col, "")]
    raise CatalogUpdateError("name the products: images (a folder), catalog (a CSV) or ids")


def removal_ids(images: str | os.PathLike[str] | None = None, catalog: str | os.PathLike[str] | None = None,
                ids: Sequence[str] | None = None) -> list[str]:
    """The ids to remove (as :func:`ids_from`); an empty list or an id named twice is a :class:`CatalogUpdateError`
    (nothing would change, or the count reported would be wrong)."""
    gone = ids_from(images, catalog, ids)
    if not gone:
        raise CatalogUpdateError("no ids to remove (the list is empty); name at least one product id")
    seen: set[str] = set()
    twice = [i for i in gone if i in seen or seen.add(i)]
    if twice:
        raise CatalogUpdateError(f"{len(set(twice))} id(s) named more than once: {sorted(set(twice))[:5]}; name each "
                                 "product once")
    return gone


def update_catalog(bundle: str | os.PathLike[str], action: str, *, images: str | os.PathLike[str] | None = None,
                   catalog: str | os.PathLike[str] | None = None, ids: Sequence[str] | None = None,
                   out: str | os.PathLike[str] | None = None, backend: str = "auto",
                   progress: Callable[[str], None] | None = None) -> CatalogUpdate:
    """Apply ``action`` ('add', 'remove' or 'update') to the bundle's catalog and write the next version to ``out``
    (default: replace ``bundle`` atomically).

    add / update take pictures from ``images`` (one sub-folder per category; ids are the relative paths) or
    ``catalog`` (CSV: image, id, category and extra metadata columns); remove takes ids from either, or ``ids``.
    Adding an id that exists, or updating / removing one that does not, is a :class:`CatalogUpdateError`.
    """
    from edgecart.runtime import open_bundle
    from edgecart.runtime.bundle import Bundle
    from edgecart.runtime.search import read_catalog

    if action not in ACTIONS:
        raise CatalogUpdateError(f"unknown catalog action {action!r}; known: {', '.join(ACTIONS)}")
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    src = open_bundle(bundle)
    m = src.manifest
    if out is not None:
        refuse_output_inside(Path(out), Path(src.root), kind="folder")
    parent = (Path(out) if out is not None else Path(src.root)).absolute().parent
    if parent.is_dir() and not os.access(parent, os.W_OK | os.X_OK):  # checked before any picture is embedded
        raise CatalogUpdateError(f"{parent}: the folder is not writable; the new version is staged beside the bundle, "
                                 "so pass --out on a writable disk or make that folder writable")
    if m.task != "image_search" or not m.catalog or m.catalog.get("kind") != "image_embeddings":
        raise CatalogUpdateError(f"bundle {m.name!r} has no image catalog; catalog updates are for image-search "
                                 "bundles")
    c = dict(m.catalog)
    items = json.loads(src.read_verified(c["items_file"]).decode("utf-8"))
    old_ids = [str(i) for i in items["ids"]]
    where = {i: n for n, i in enumerate(old_ids)}
    names = list(c.get("categories", ()))
    cats = [int(x) for x in items["categories"]]
    meta: list[dict[str, Any]] = [dict(x) for x in items.get("metadata", [{}] * len(old_ids))]
    variants = c["embeddings"]
    # the rows without the old index: it is built again over the new rows (or dropped), so one that no longer
    # reads (another kind, stale) does not stop the update
    rows_of = Bundle(src.root, m.replace(catalog={k: v for k, v in c.items() if k != "index"}))
    int8 = read_catalog(rows_of, "int8") if "int8" in variants else None
    fp32 = read_catalog(rows_of, "fp32") if "fp32" in variants else None
    rows8 = None if int8 is None else int8.embeddings.copy()
    scales = None if int8 is None else int8.scales.copy()
    rowsf = None if fp32 is None else fp32.embeddings.copy()
    added: list[str] = []
    removed: list[str] = []
    updated: list[str] = []
    skipped: tuple[tuple[str, str], ...] = ()
    embedder = None

    if action == "remove":
        gone = removal_ids(images, catalog, ids)
        missing = [i for i in gone if i not in where]
        if missing:
            raise CatalogUpdateError(f"cannot remove {len(missing)} id(s) not in the catalog: {missing[:5]}")
        keep = np.asarray([n for n, i in enumerate(old_ids) if i not in set(gone)], np.int64)
        if len(keep) == 0:
            raise CatalogUpdateError("removing every item would leave an empty catalog")
        old_ids, cats, meta = [old_ids[k] for k in keep], [cats[k] for k in keep], [meta[k] for k in keep]
        rows8 = None if rows8 is None else rows8[keep]
        scales = None if scales is None else scales[keep]
        rowsf = None if rowsf is None else rowsf[keep]
        removed = gone
    else:
        from edgecart.data.image_folder import load_image_catalog, load_image_folder

        if (images is None) == (catalog is None):
            raise CatalogUpdateError(f"catalog {action} needs exactly one of images (a folder) or catalog (a CSV)")
        pre = m.preprocessing
        t = time.perf_counter()
        new = load_image_folder(images, pre) if images is not None else load_image_catalog(catalog, pre)
        timings["read_s"] = time.perf_counter() - t
        skipped = new.skipped
        dup = [i for i in new.ids if i in where] if action == "add" else []
        if dup:
            raise CatalogUpdateError(f"{len(dup)} id(s) are already in the catalog: {dup[:5]}; use 'catalog update' "
                                     "to replace them")
        absent = [i for i in new.ids if i not in where] if action == "update" else []
        if absent:
            raise CatalogUpdateError(f"{len(absent)} id(s) are not in the catalog: {absent[:5]}; use 'catalog add'")
        t = time.perf_counter()
        emb, embedder = embed_pictures(src, new.images, backend=backend, progress=progress)
        timings["embed_s"] = time.perf_counter() - t
        new_cats = []
        for lab in new.labels:
            name = new.classes[int(lab)]
            if name not in names:
                names.append(name)
            new_cats.append(names.index(name))
        new_meta = [dict(x) for x in (new.metadata or [{}] * len(new))]
        from edgecart.runtime.search import quantize_rows

        q8, s8 = quantize_rows(emb)
        if action == "add":
            old_ids, cats, meta = old_ids + list(new.ids), cats + new_cats, meta + new_meta
            rows8 = None if rows8 is None else np.concatenate([rows8, q8])
            scales = None if scales is None else np.concatenate([scales, s8])
            rowsf = None if rowsf is None else np.concatenate([rowsf, emb])
            added = list(new.ids)
        else:
            for j, i in enumerate(new.ids):
                n = where[i]
                cats[n], meta[n] = new_cats[j], new_meta[j]
                if rows8 is not None:
                    rows8[n], scales[n] = q8[j], s8[j]
                if rowsf is not None:
                    rowsf[n] = emb[j]
            updated = list(new.ids)

    dest = Path(out) if out is not None else Path(src.root)
    version = bump_version(m.version)
    t = time.perf_counter()
    notes: list[str] = []
    path = _write(src, dest, version, c, old_ids, cats, names, meta, rows8, scales, rowsf, action,
                  len(added or removed or updated), embedder, notes, timings)
    timings["write_s"] = time.perf_counter() - t
    n_items = len(old_ids)
    for note in notes:  # the CLI passes no progress: the note goes to stderr, beside the command's own output
        if progress:
            progress(note)
        else:
            print(f"edgecart catalog: {note}", file=sys.stderr)
    if progress:
        progress(f"catalog {action}: {len(added or removed or updated)} item(s); {m.name} {m.version} -> {version}, "
                 f"{n_items} items, verified, at {path}")
    return CatalogUpdate(path, version, n_items, tuple(added), tuple(removed), tuple(updated), tuple(skipped),
                         time.perf_counter() - t0, timings, tuple(notes))


def embed_pictures(bundle: Any, pictures: np.ndarray, *, backend: str = "auto",
                   progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, str]:
    """(N, D) embeddings of uint8 pictures already at the manifest's size, by the bundle's fp32 model (its int8 one
    when it has no fp32 artifact) through the runtime; returns them and the artifact's name."""
    from edgecart.progress import progress_iter
    from edgecart.runtime.preprocess import normalise
    from edgecart.runtime.session import load

    precisions = {a.precision for a in bundle.manifest.artifacts}
    session = load(bundle, backend, precision="fp32" if "fp32" in precisions else None, threads=1)
    out_name = bundle.manifest.outputs[0].name
    x = normalise(pictures, bundle.manifest.preprocessing)
    rows = [session.run(x[i:i + 1])[out_name].reshape(-1)
            for i in progress_iter(range(len(x)), desc="embed new products", unit="img")]
    emb = np.stack(rows).astype(np.float32) if rows else np.zeros((0, bundle.manifest.outputs[0].shape[-1]),
                                                                   np.float32)
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    return emb / np.where(norms > 0, norms, 1.0), session.artifact.name


def _write(src: Any, dest: Path, version: str, c: dict[str, Any], ids: list[str], cats: list[int],
           names: list[str], meta: list[dict[str, Any]], rows8: np.ndarray | None, scales: np.ndarray | None,
           rowsf: np.ndarray | None, action: str, count: int, embedder: str | None, notes: list[str],
           timings: dict[str, float]) -> Path:
    from edgecart.exporters import BundleWriter
    from edgecart.runtime import open_bundle

    m = src.manifest
    same = dest.absolute() == Path(src.root).absolute()
    if dest.exists() and not same:
        raise BundleError(f"{dest} already exists; choose another --out (or leave --out out to replace the bundle)")
    golden_paths = set()
    if m.golden is not None:
        golden_paths = set(m.golden.inputs.values()) | set(m.golden.outputs.values())
    old_index = c.get("index")
    index_paths = {v for k, v in old_index.items() if k.endswith("_path")} if isinstance(old_index, dict) else set()
    with BundleWriter(dest, name=m.name, version=version, task=m.task, inputs=m.inputs, outputs=m.outputs,
                      preprocessing=m.preprocessing, overwrite=same,
                      backend_preference=m.backend_preference) as w:  # it ranks the models, which stay the same
        for f in m.files:
            if f.role == "catalog" or f.path in golden_paths or f.path in index_paths:
                continue
            w.file_path(f.path).write_bytes(src.read_verified(f.path))  # checked as copied
            w.add_file(f.path, f.role)
        for a in m.artifacts:
            w.add_artifact(a)
        if m.golden is not None:
            w.set_golden({n: src.load_npy(p) for n, p in m.golden.inputs.items()},
                         {n: src.load_npy(p) for n, p in m.golden.outputs.items()})
        items: dict[str, Any] = {"ids": ids, "categories": cats}
        if any(meta):
            items["metadata"] = meta
        w.add_file(c["items_file"], "catalog", json.dumps(items, separators=(",", ":")).encode())
        variants = c["embeddings"]
        if rows8 is not None:
            w.add_file(variants["int8"]["path"], "catalog", np.ascontiguousarray(rows8, np.int8))
            w.add_file(variants["int8"]["scale_path"], "catalog", np.ascontiguousarray(scales, np.float32))
        if rowsf is not None:
            w.add_file(variants["fp32"]["path"], "catalog", np.ascontiguousarray(rowsf, np.float32))
        by = c.get("embedded_by", "")
        history = list(c.get("updates", []))
        history.append({"action": action, "items": count, "from_version": m.version, "version": version,
                        **({"embedded_by": f"the bundle's own model ({embedder}) through the runtime"} if embedder
                           else {})})
        if embedder and by and by != "student":
            by = f"{by} + student (catalog updates)"
        w.catalog = {**{k: v for k, v in c.items() if k != "index"}, "items": len(ids), "categories": list(names),
                     "embedded_by": by, "updates": history}
        if old_index is not None:
            t = time.perf_counter()
            _index_again(w, old_index, rows8, scales, rowsf, notes)
            timings["index_s"] = time.perf_counter() - t
        w.quality = {**m.quality, "catalog_updates": "quality figures were measured on the catalog of version "
                     f"{history[0]['from_version']}; the catalog has changed since"}
        path = w.commit()
    open_bundle(path)  # verified again as a reader sees it
    return path


def _index_again(w: Any, old: Any, rows8: np.ndarray | None, scales: np.ndarray | None, rowsf: np.ndarray | None,
                 notes: list[str]) -> None:
    """Build the catalog's approximate index again over the new rows (``w.catalog`` set, without the old index), with
    the old entry's settings; when that cannot be done, leave the catalog without one and add a note saying so."""
    from edgecart.runtime.index import rebuild_index

    from_fp32 = isinstance(old, dict) and old.get("built_from") == "float32"
    emb, sc = (rowsf, None) if rowsf is not None and (from_fp32 or rows8 is None) else (rows8, scales)
    try:
        rebuild_index(w, old, emb, sc)
    except EdgecartError as exc:
        kind = old.get("kind") if isinstance(old, dict) else None
        notes.append(f"the catalog's approximate index ({kind or 'unknown kind'}) could not be rebuilt ({exc}); "
                     "it was dropped from the new version, whose searches scan every row (exact). Add an index "
                     "again with edgecart.runtime.index.add_index if the catalog is big")


__all__ = ["ACTIONS", "CatalogUpdate", "CatalogUpdateError", "bump_version", "embed_pictures", "ids_from",
           "removal_ids", "update_catalog"]
