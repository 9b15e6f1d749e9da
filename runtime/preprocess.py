"""Image preprocessing exactly as a bundle's manifest states it, in numpy (PIL only to decode files, imported lazily).

The steps, in this order, are the contract between training and the device (docs/mobile.md repeats it for apps;
image bundles carry test vectors — raw JPEG/PNG files with the expected tensor — to check an app against it):

1. **Decode** a file (PIL) or take a PIL image / uint8 array (HxW, HxWx1, HxWx3). Pixel values are taken as
   they are (sRGB assumed; an embedded ICC profile is not applied); 1-bit pictures become 8-bit gray (0/255) and
   16-bit gray is scaled to 8 bits (``round(v * 255 / 65535)``).
2. **Orientation**: the EXIF orientation tag of a file or PIL image is applied (the picture is turned/mirrored as a
   viewer shows it, ``ImageOps.exif_transpose``). Arrays are taken as already upright.
3. **Transparency**: a picture with an alpha channel (RGBA, LA, or a palette/gray/RGB PNG with a transparent
   colour) is composited over **white**, in integers: ``out = (c * a + 255 * (255 - a) + 127) // 255`` per
   channel (a = alpha, 0..255). Arrays with 4 channels are refused (say how to flatten them).
4. **Colour**: RGB to grayscale with the ITU-R 601-2 luma weights (0.299, 0.587, 0.114), computed in float (not
   rounded before resizing); grayscale to RGB by replicating the channel; palette, CMYK and YCbCr pictures are
   converted to RGB by PIL first.
5. **Resize** to ``size`` = (height, width), separably, as a fixed linear map: ``bilinear`` is a triangle filter with
   half-pixel centres whose support widens with the downscale factor (antialiased, like PIL's ``BILINEAR``) and
   plain bilinear interpolation when upscaling; ``nearest`` takes the source pixel holding each output centre.
   Nothing is done when the size already matches. The whole picture is resized (no crop; the aspect ratio is not
   kept).
6. **Round** to uint8 (round half to even, clip to 0..255): the model sees an 8-bit picture at its own size, as
   training did.
7. **Normalise** ``(p * scale - mean) / std`` per channel and lay out as NCHW or NHWC with a batch axis of 1.

The training pipeline calls :func:`to_model_uint8` / :func:`resize_batch` from here, so catalog, training and
device images go through the same arithmetic.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgecartError, InputSpecError
from .manifest import ImagePreprocessing

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
#: the picture files builds gather from folders (any format Pillow reads is accepted where a file is passed)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


class ImageInputError(InputSpecError):
    """An image cannot be read or is not a picture this bundle can take."""


@lru_cache(maxsize=64)
def resize_matrix(n_in: int, n_out: int, method: str = "bilinear") -> np.ndarray:
    """The (n_out, n_in) float32 matrix that resizes one axis (rows sum to 1)."""
    if n_in <= 0 or n_out <= 0:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    scale = n_in / n_out
    m = np.zeros((n_out, n_in), dtype=np.float64)
    centres = (np.arange(n_out) + 0.5) * scale
    if method == "nearest":
        m[np.arange(n_out), np.minimum(np.floor(centres).astype(np.int64), n_in - 1)] = 1.0
        return m.astype(np.float32)
    if method != "bilinear":
        raise ValueError(f"resize method {method!r} must be 'bilinear' or 'nearest'")
    support = max(scale, 1.0)
    src = np.arange(n_in) + 0.5
    w = np.clip(1.0 - np.abs(src[None, :] - centres[:, None]) / support, 0.0, None)
    m = w / w.sum(axis=1, keepdims=True)
    return m.astype(np.float32)


def resize_batch(images: np.ndarray, size: tuple[int, int], method: str = "bilinear") -> np.ndarray:
    """Resize (N, H, W) or (N, H, W, C) images to ``size`` (float32 out; the input is returned as float if equal).

    The sums run in float64: in float32 the order a machine's BLAS kernel adds in moved a few pixels per hundred
    thousand across a rounding boundary, so the stored uint8 pictures, and the cache keys hashed from them, differed
    between an AVX2 and an AVX-512 machine."""
    h, w = images.shape[1], images.shape[2]
    if (h, w) == tuple(size):
        return images.astype(np.float32, copy=False)
    x = images.astype(np.float64, copy=False)
    ry, rx = (resize_matrix(h, size[0], method).astype(np.float64),
              resize_matrix(w, size[1], method).astype(np.float64))
    if x.ndim == 3:
        return np.einsum("oh,nhw,pw->nop", ry, x, rx, optimize=True).astype(np.float32)
    return np.einsum("oh,nhwc,pw->nopc", ry, x, rx, optimize=True).astype(np.float32)


#: the most pixels one picture may have (Pillow's own decompression-bomb threshold, applied to arrays as well)
MAX_PIXELS = 89_478_485


def load_image(image: Any) -> np.ndarray:
    """A file path, PIL image or uint8 array as a uint8 array (H, W) or (H, W, 3)."""
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image))
    if isinstance(image, np.ndarray):
        return _check_array(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image, without importing PIL
        return decode_pil(image)
    raise ImageInputError(f"an image must be a file path, a PIL image or a uint8 array, got {type(image).__name__}")


def to_model_uint8(images: np.ndarray, pre: ImagePreprocessing) -> np.ndarray:
    """Steps 2-4 on a batch of uint8 images (N, H, W) or (N, H, W, 3): uint8 (N, h, w[, 3]) at ``pre.size``."""
    x = images
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if pre.color == "grayscale" and x.ndim == 4:
        x = x.astype(np.float32) @ _LUMA
    elif pre.color == "rgb" and x.ndim == 3:
        x = np.repeat(x[..., None], 3, axis=-1)
    if tuple(x.shape[1:3]) == tuple(pre.size) and x.dtype == np.uint8:
        return x
    y = resize_batch(x, pre.size, pre.resize)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def normalise(images: np.ndarray, pre: ImagePreprocessing) -> np.ndarray:
    """Step 5 on a batch of uint8 images at the model's size: float32 (N, C, h, w) or (N, h, w, C)."""
    x = images.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    mean = np.asarray(pre.mean, np.float32)
    std = np.asarray(pre.std, np.float32)
    x = (x * np.float32(pre.scale) - mean) / std
    if pre.layout == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    # a real copy: np.ascontiguousarray keeps the odd strides of size-1 axes, which engines that read the memory
    # layout (ExecuTorch's dim order) would take for channels-last
    return np.array(x, dtype=np.float32, order="C", copy=True)


def preprocess(image: Any, pre: ImagePreprocessing) -> np.ndarray:
    """One picture (path, PIL image or uint8 array) as the model's input: float32 with a batch axis of 1."""
    return normalise(to_model_uint8(load_image(image)[None], pre), pre)


def _check_array(a: np.ndarray) -> np.ndarray:
    if a.dtype != np.uint8:
        raise ImageInputError(f"image arrays must be uint8 (0..255), got {a.dtype}; convert with "
                              "np.clip(a, 0, 255).astype(np.uint8)")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[-1] == 4:
        raise ImageInputError("RGBA arrays are not taken; drop the alpha channel (a[..., :3])")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ImageInputError(f"image arrays must be HxW, HxWx1 or HxWx3, got shape {a.shape}")
    if min(a.shape[:2]) < 1:
        raise ImageInputError(f"image has no pixels (shape {a.shape})")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ImageInputError(f"image of {a.shape[0]}x{a.shape[1]} pixels is larger than {MAX_PIXELS} pixels (Pillow's "
                              "decompression-bomb limit); downscale it first")
    return np.ascontiguousarray(a)


def _read_file(p: Path) -> np.ndarray:
    if not p.is_file():
        raise ImageInputError(f"{p}: no such image file")
    return _decode(p, str(p))


def decode_bytes(data: bytes, name: str) -> np.ndarray:
    """An encoded picture (JPEG, PNG) held in memory, e.g. bytes read and checked from a bundle, as uint8 (steps 1-3);
    ``name`` labels it in errors."""
    import io

    return _decode(io.BytesIO(data), name)


def _decode(source: Any, name: str) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgecartError("reading image files needs Pillow: pip install pillow (or pass a uint8 array)") from None
    import warnings

    try:
        with warnings.catch_warnings():
            # the size is checked below, from the header, before anything is decoded (Pillow only warns up to 2x)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageInputError(f"{name}: image of {h}x{w} pixels is larger than {MAX_PIXELS} pixels (Pillow's "
                                      "decompression-bomb limit); downscale it first")
            img.load()
            return decode_pil(img)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        if isinstance(exc, ImageInputError):
            raise
        raise ImageInputError(f"{name}: not a readable image ({exc}); pass a JPEG, PNG, WebP or BMP file") from None


_GRAY_MODES = ("1", "L", "I;16", "I;16B", "I;16L", "I", "F")


def decode_pil(img: Any) -> np.ndarray:
    """Steps 1-3 on a PIL image: EXIF orientation applied, alpha composited over white; uint8 (H, W) or (H, W, 3)."""
    from PIL import ImageOps

    img = ImageOps.exif_transpose(img) or img
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        gray = img.mode in ("LA", "La") or (img.mode in _GRAY_MODES and "transparency" in img.info)
        a = np.asarray(img.convert("LA" if gray else "RGBA"))
        return _check_array(over_white(a[..., :-1], a[..., -1]))
    if img.mode in _GRAY_MODES:
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # wide gray: scale the 16-bit range to 8 bits
            wide = np.asarray(img, dtype=np.float64)
            top = 65535.0 if img.mode.startswith("I;16") or wide.max() > 255 else 255.0
            return _check_array(np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8))
        return _check_array(np.asarray(img.convert("L")))
    return _check_array(np.asarray(img.convert("RGB")))


def over_white(color: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Composite straight-alpha uint8 ``color`` (H, W[, C]) over white: ``(c*a + 255*(255-a) + 127) // 255``."""
    c = color.astype(np.int32)
    a = alpha.astype(np.int32)
    if c.ndim == 3:
        a = a[..., None]
    out = (c * a + 255 * (255 - a) + 127) // 255
    out = out.astype(np.uint8)
    return out[..., 0] if out.ndim == 3 and out.shape[-1] == 1 else out


#: The name of the policy above, recorded with a bundle's test vectors.
POLICY = "edgecart-image-1: EXIF orientation, alpha over white, luma 601-2 / gray replicated, triangle resize"
TEST_VECTOR_DIR = "test_vectors"
#: An app's preprocessed input may differ from a test vector's expected input by this many 8-bit levels
#: (times scale / std): PNG decoding is exact, JPEG decoders (libjpeg-turbo, Android, iOS) differ a little.
PNG_TOLERANCE_LEVELS = 1.0
JPEG_TOLERANCE_LEVELS = 3.0


def check_test_vectors(bundle: Any, run: Any = None) -> list[dict[str, Any]]:
    """Decode and preprocess each of a bundle's raw-image test vectors with this module and compare with the expected
    input; with ``run`` (a Session.run) also compare the model's output with the expected embedding. One row per
    vector: ``input_max_abs_diff``, ``input_ok`` and, with ``run``, ``output_max_abs_diff`` and ``output_cosine``.
    An empty list when the bundle carries none."""
    m = bundle.manifest
    record = (m.quality or {}).get("test_vectors")
    if not record or not isinstance(m.preprocessing, ImagePreprocessing):
        return []
    pre = m.preprocessing
    unit = float(pre.scale) / float(min(pre.std))
    rows = []
    for v in record.get("vectors", []):
        x = preprocess(decode_bytes(bundle.read_verified(v["image"]), v["image"]), pre)
        want = bundle.load_npy(v["input"])
        levels = JPEG_TOLERANCE_LEVELS if v["image"].lower().endswith((".jpg", ".jpeg")) else PNG_TOLERANCE_LEVELS
        d_in = float(np.max(np.abs(x - want))) if x.shape == want.shape else float("inf")
        row: dict[str, Any] = {"name": v["name"], "checks": v.get("checks", ""), "input_max_abs_diff": d_in,
                               "input_tolerance": levels * unit, "input_ok": d_in <= levels * unit + 1e-6}
        if run is not None:
            y = np.asarray(run(want)[v["output"]], np.float64).ravel()
            ref = bundle.load_npy(v["expected"]).astype(np.float64).ravel()
            row["output_max_abs_diff"] = float(np.max(np.abs(y - ref)))
            den = float(np.linalg.norm(y) * np.linalg.norm(ref))
            row["output_cosine"] = float(y @ ref / den) if den > 0 else float(np.allclose(y, ref))
        rows.append(row)
    return rows


def test_vector_report(bundle: Any, run: Any = None) -> tuple[list[str], int]:
    """Lines for ``edgecart check`` and the number of test vectors out of tolerance (input, or output when ``run``
    is given: the session's parity tolerance from the manifest, else cosine >= 0.999)."""
    if not (bundle.manifest.quality or {}).get("test_vectors"):
        return [], 0
    try:
        import PIL  # noqa: F401  (decoding the vectors' JPEG/PNG files)
    except ImportError:
        return ["  test vectors skipped: decoding them needs Pillow (pip install pillow)"], 0
    rows = check_test_vectors(bundle, run)
    lines, bad = [], 0
    tol = None
    session = getattr(run, "__self__", None)
    if session is not None and getattr(session.artifact, "parity", None) is not None:
        tol = session.artifact.parity
    for r in rows:
        ok = r["input_ok"]
        text = (f"  test vector {r['name']:<12} input max|Δ| {r['input_max_abs_diff']:.1e} "
                f"(≤ {r['input_tolerance']:.1e})")
        if "output_max_abs_diff" in r:
            if tol is not None:
                ok &= (tol.max_abs_tolerance is None or r["output_max_abs_diff"] <= tol.max_abs_tolerance) and (
                    tol.min_cosine is None or r["output_cosine"] >= tol.min_cosine)
            else:
                ok &= r["output_cosine"] >= 0.999
            text += f"  output max|Δ| {r['output_max_abs_diff']:.1e} cos {r['output_cosine']:.6f}"
        bad += not ok
        lines.append(f"{text}  {'ok' if ok else 'OUT OF TOLERANCE'}  ({r['checks']})")
    return lines, bad
