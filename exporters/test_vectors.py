"""Raw-image test vectors for image bundles: a few encoded pictures (JPEG and PNG; one with an EXIF rotation, one with
transparency, one in gray) with the tensor our preprocessing makes of each and the reference model's embedding of it.

An app decodes ``test_vectors/<name>.jpg|png`` with its own code, preprocesses it as the manifest says, and compares
with ``<name>.input.npy`` (then runs its engine and compares with ``<name>.embedding.npy``): the usual silent failure
when a model moves into an app — a rotated photo, a transparent PNG turned black, BGR for RGB, another resize filter —
shows up as a mismatch. The list lives in the manifest under ``quality["test_vectors"]``; the files have role
``golden``. ``edgecart check`` runs them (:func:`edgecart.runtime.preprocess.check_test_vectors`).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from edgecart.runtime.manifest import ImagePreprocessing
from edgecart.runtime.preprocess import (
    JPEG_TOLERANCE_LEVELS,
    PNG_TOLERANCE_LEVELS,
    POLICY,
    TEST_VECTOR_DIR,
    preprocess,
)

#: name -> (file suffix, what it checks)
VECTORS = {
    "photo": ("jpg", "JPEG decode, colour, resize"),
    "rotated": ("jpg", "EXIF orientation 6: stored turned 90 degrees, shown upright"),
    "transparent": ("png", "alpha composited over white"),
    "gray": ("png", "8-bit gray PNG: channel replication or luma"),
}


def _upright(source: np.ndarray, pre: ImagePreprocessing, k: int) -> np.ndarray:
    """An RGB uint8 picture, larger than the model's input and not square (so resizing is exercised)."""
    from PIL import Image

    src = source if source.ndim == 3 else np.repeat(source[..., None], 3, axis=-1)
    if src.shape[-1] == 1:
        src = np.repeat(src, 3, axis=-1)
    h, w = pre.size
    img = Image.fromarray(np.ascontiguousarray(src, np.uint8)).resize((2 * w + 5 + k, 2 * h + 3),
                                                                          Image.Resampling.BICUBIC)
    a = np.asarray(img).astype(np.int16)
    if source.ndim == 2 or (source.ndim == 3 and source.shape[-1] == 1):  # tint gray sources: colour must matter
        a = a + np.array([18, 0, -18], np.int16)
    return np.clip(a, 0, 255).astype(np.uint8)


def encode_vectors(sources: np.ndarray, pre: ImagePreprocessing) -> dict[str, bytes]:
    """The encoded pictures, deterministic for given sources (uint8 (N, H, W) or (N, H, W, 3))."""
    from PIL import Image

    pick = [sources[i % len(sources)] for i in range(4)]
    out: dict[str, bytes] = {}
    buf = io.BytesIO()
    Image.fromarray(_upright(pick[0], pre, 0)).save(buf, "JPEG", quality=92)
    out["photo"] = buf.getvalue()
    # stored turned 90 degrees counter-clockwise; orientation 6 tells a viewer to turn it 90 degrees clockwise
    up = _upright(pick[1], pre, 1)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.rot90(up, 1))).save(buf, "JPEG", quality=92, exif=exif.tobytes())
    out["rotated"] = buf.getvalue()
    rgb = _upright(pick[2], pre, 2)
    hh, ww = rgb.shape[:2]
    yy, xx = np.mgrid[0:hh, 0:ww]
    alpha = np.clip(255.0 * (xx / (ww - 1)), 0, 255).astype(np.uint8)  # clear on the left, opaque on the right
    alpha[: hh // 4] = 0  # a fully transparent band whose hidden colour is dark: wrong handling shows black
    rgb[: hh // 4] = (20, 20, 20)
    buf = io.BytesIO()
    Image.fromarray(np.dstack([rgb, alpha])).save(buf, "PNG")
    out["transparent"] = buf.getvalue()
    gray = np.asarray(Image.fromarray(_upright(pick[3], pre, 3)).convert("L"))
    buf = io.BytesIO()
    Image.fromarray(gray).save(buf, "PNG")
    out["gray"] = buf.getvalue()
    return out


def write_test_vectors(writer: Any, model: Any, pre: ImagePreprocessing, sources: np.ndarray,
                       output: str | None = None) -> dict[str, Any]:
    """Add the test vectors to ``writer`` (a BundleWriter): pictures made from ``sources`` (a few uint8 images of
    the task), the expected preprocessed input and ``model``'s (eager fp32) embedding of it. Records the list in
    ``writer.quality["test_vectors"]`` and returns it."""
    import torch

    if not isinstance(pre, ImagePreprocessing):
        raise TypeError("test vectors are for image bundles (ImagePreprocessing)")
    sources = np.asarray(sources)
    if sources.dtype != np.uint8 or sources.ndim not in (3, 4) or len(sources) == 0:
        raise ValueError(f"sources must be uint8 images (N, H, W[, 3]), got {sources.dtype} {sources.shape}")
    out_name = output or writer.meta["outputs"][0].name
    entries = []
    for name, data in encode_vectors(sources, pre).items():
        suffix, checks = VECTORS[name]
        rel = f"{TEST_VECTOR_DIR}/{name}.{suffix}"
        writer.add_file(rel, "golden", data)
        x = preprocess(writer.file_path(rel), pre)
        with torch.no_grad():
            y = model.eval()(torch.from_numpy(x))
        y = (y[0] if isinstance(y, (tuple, list)) else y).detach().cpu().numpy().astype(np.float32)
        inp = writer.add_file(f"{TEST_VECTOR_DIR}/{name}.input.npy", "golden", np.ascontiguousarray(x)).path
        emb = writer.add_file(f"{TEST_VECTOR_DIR}/{name}.embedding.npy", "golden", np.ascontiguousarray(y)).path
        entries.append({"name": name, "image": rel, "input": inp, "output": out_name, "expected": emb,
                        "checks": checks})
    record = {"policy": POLICY, "vectors": entries,
              "tolerance": {"input_levels_png": PNG_TOLERANCE_LEVELS, "input_levels_jpeg": JPEG_TOLERANCE_LEVELS,
                            "note": "allowed |input - expected| in 8-bit levels (x scale / std); JPEG decoders "
                                    "differ slightly. Embeddings: the artifact's parity tolerance"}}
    writer.quality["test_vectors"] = record
    return record


__all__ = ["VECTORS", "encode_vectors", "write_test_vectors"]
