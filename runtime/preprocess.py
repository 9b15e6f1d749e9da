"""Image preprocessing exactly as a bundle's manifest states it, in numpy (PIL only to decode files, imported lazily).

The steps, in this order, are the contract between training and the device:

1. **Decode** a file (PIL) or take a PIL image / uint8 array (HxW, HxWx1, HxWx3).
2. **Colour**: RGB to grayscale with the ITU-R 601-2 luma weights (0.299, 0.587, 0.114), computed in float;
   grayscale to RGB by replicating the channel.
3. **Resize** to ``size`` = (height, width), separably, as a fixed linear map: ``bilinear`` is a triangle filter with
   half-pixel centres whose support widens with the downscale factor (antialiased, like PIL's ``BILINEAR``) and
   plain bilinear interpolation when upscaling; ``nearest`` takes the source pixel holding each output centre.
   Nothing is done when the size already matches.
4. **Round** to uint8 (clip to 0..255): the model sees an 8-bit picture at its own size, as training did.
5. **Normalise** ``(p * scale - mean) / std`` per channel and lay out as NCHW or NHWC with a batch axis of 1.

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
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


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
    """Resize (N, H, W) or (N, H, W, C) images to ``size`` (float32 out; the input is returned as float if equal)."""
    h, w = images.shape[1], images.shape[2]
    x = images.astype(np.float32, copy=False)
    if (h, w) == tuple(size):
        return x
    ry, rx = resize_matrix(h, size[0], method), resize_matrix(w, size[1], method)
    if x.ndim == 3:
        return np.einsum("oh,nhw,pw->nop", ry, x, rx, optimize=True).astype(np.float32, copy=False)
    return np.einsum("oh,nhwc,pw->nopc", ry, x, rx, optimize=True).astype(np.float32, copy=False)


#: the most pixels one picture may have (Pillow's own decompression-bomb threshold, applied to arrays as well)
MAX_PIXELS = 89_478_485


def load_image(image: Any) -> np.ndarray:
    """A file path, PIL image or uint8 array as a uint8 array (H, W) or (H, W, 3)."""
    if isinstance(image, (str, os.PathLike)):
        return _read_file(Path(image))
    if isinstance(image, np.ndarray):
        return _check_array(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # a PIL image, without importing PIL
        img = image.convert("RGB") if image.mode not in ("L", "RGB") else image
        return _check_array(np.asarray(img))
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
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise EdgecartError("reading image files needs Pillow: pip install pillow (or pass a uint8 array)") from None
    try:
        with Image.open(p) as img:
            img.load()
            img = img.convert("L") if img.mode in ("L", "1", "I;16", "I", "F", "LA") else img.convert("RGB")
            return _check_array(np.asarray(img))
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageInputError(f"{p}: not a readable image ({exc}); pass a JPEG or PNG file") from None
