"""The image preprocessing policy (runtime/preprocess.py, docs/mobile.md), each rule checked on generated pictures,
and the raw-image test vectors image bundles carry (exporters/test_vectors.py)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from edgecart.runtime import ImagePreprocessing, open_bundle
from edgecart.runtime.preprocess import (
    check_test_vectors,
    load_image,
    over_white,
    preprocess,
    resize_batch,
    to_model_uint8,
)

Image = pytest.importorskip("PIL.Image")


def _picture(h: int = 30, w: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.stack(np.mgrid[0:h, 0:w], -1).sum(-1) * 4
    return np.clip(np.dstack([base, base[::-1], 255 - base]) + rng.integers(0, 30, (h, w, 3)), 0, 255).astype(
        np.uint8)


def _png(img, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied(tmp_path):
    up = _picture()
    for tag, stored in ((6, np.rot90(up, 1)), (8, np.rot90(up, -1)), (3, np.rot90(up, 2)), (2, up[:, ::-1])):
        exif = Image.Exif()
        exif[0x0112] = tag
        p = tmp_path / f"o{tag}.png"
        p.write_bytes(_png(Image.fromarray(np.ascontiguousarray(stored)), exif=exif.tobytes()))
        np.testing.assert_array_equal(load_image(p), up, err_msg=f"orientation {tag}")
        with Image.open(p) as im:  # a PIL image passed in is turned the same way
            np.testing.assert_array_equal(load_image(im), up)


def test_alpha_is_composited_over_white(tmp_path):
    rgb = _picture()
    alpha = np.zeros(rgb.shape[:2], np.uint8)
    alpha[:, 10:] = 255
    alpha[:, 5:10] = 128
    p = tmp_path / "rgba.png"
    p.write_bytes(_png(Image.fromarray(np.dstack([rgb, alpha]))))
    got = load_image(p)
    np.testing.assert_array_equal(got[:, :5], 255)  # clear -> white, whatever colour hides there
    np.testing.assert_array_equal(got[:, 10:], rgb[:, 10:])  # opaque -> unchanged
    half = (rgb[:, 5:10].astype(int) * 128 + 255 * 127 + 127) // 255
    np.testing.assert_array_equal(got[:, 5:10], half)
    assert over_white(np.array([[0]], np.uint8), np.array([[128]], np.uint8))[0, 0] == 127
    # gray + alpha, and a palette PNG with a transparent index
    la = tmp_path / "la.png"
    la.write_bytes(_png(Image.fromarray(np.dstack([rgb[..., 0], alpha]))))
    assert load_image(la).ndim == 2 and (load_image(la)[:, :5] == 255).all()
    pal = Image.fromarray(np.where(alpha[..., None] == 0, 0, rgb)).convert("P", palette=Image.Palette.ADAPTIVE)
    idx = np.asarray(pal)[0, 0]
    pp = tmp_path / "pal.png"
    pp.write_bytes(_png(pal, transparency=int(idx)))
    assert (load_image(pp)[np.asarray(pal) == idx] == 255).all()


def test_colour_conversion_rules(tmp_path):
    rgb = _picture()
    gray_pre = ImagePreprocessing(rgb.shape[:2], "grayscale", mean=(0.5,), std=(0.5,))
    luma = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    np.testing.assert_array_equal(to_model_uint8(rgb[None], gray_pre)[0], np.clip(np.rint(luma), 0, 255))
    g = rgb[..., 1]
    rgb_pre = ImagePreprocessing(rgb.shape[:2], "rgb")
    np.testing.assert_array_equal(to_model_uint8(g[None], rgb_pre)[0], np.dstack([g, g, g]))
    x = preprocess(rgb, rgb_pre)  # channel order is R, G, B (NCHW): a BGR app shows up here
    np.testing.assert_allclose(x[0, 0], (rgb[..., 0] / 255.0 - 0.5) / 0.5, atol=1e-6)
    wide = tmp_path / "wide.png"
    wide.write_bytes(_png(Image.fromarray(g.astype(np.uint16) * 257)))
    np.testing.assert_array_equal(load_image(wide), g)  # 16-bit gray scaled to 8 bits


def test_resize_is_an_antialiased_triangle_filter_like_pils_bilinear():
    rgb = _picture(97, 61, seed=3)
    ours = np.clip(np.rint(resize_batch(rgb[None], (28, 20))[0]), 0, 255)
    pil = np.asarray(Image.fromarray(rgb).resize((20, 28), Image.Resampling.BILINEAR)).astype(float)
    assert np.abs(ours - pil).max() <= 1.0
    up = np.clip(np.rint(resize_batch(rgb[None, :10, :10], (25, 25))[0]), 0, 255)
    pil_up = np.asarray(Image.fromarray(rgb[:10, :10]).resize((25, 25), Image.Resampling.BILINEAR)).astype(float)
    assert np.abs(up - pil_up).max() <= 1.0


def test_resized_pixels_do_not_depend_on_the_order_of_the_sums():
    """The stored pixels key the caches (a shipped teacher is found by a hash of them), so they must come out the
    same on every machine, whatever order its BLAS kernel adds in: the float32 sums did not (an AVX-512 machine
    rounded some pixels the other way, and the demo no longer found its shipped teacher)."""
    from edgecart.runtime.preprocess import resize_matrix

    rng = np.random.default_rng(0)
    pics = rng.integers(0, 256, (64, 300, 200, 3), dtype=np.uint8)  # float32 sums rounded 6-7 of these wrongly
    ours = to_model_uint8(pics, ImagePreprocessing((64, 64), "rgb"))
    ry = resize_matrix(300, 64).astype(np.float64)
    rx = resize_matrix(200, 64).astype(np.float64)
    # the other order: columns first, then rows
    cols = np.tensordot(pics.astype(np.float64), rx, axes=([2], [1]))  # n, h, c, p
    other = np.tensordot(ry, cols, axes=([1], [1])).transpose(1, 0, 3, 2)  # n, o, p, c
    assert np.array_equal(ours, np.clip(np.rint(other.astype(np.float32)), 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def vector_bundle(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from edgecart.exporters import BundleWriter, export_artifact
    from edgecart.exporters.export import golden_from_model
    from edgecart.exporters.test_vectors import write_test_vectors
    from edgecart.models.tiny import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN(in_channels=3).eval()
    pre = ImagePreprocessing((28, 28), "rgb")
    sources = np.stack([_picture(40, 36, seed=i) for i in range(4)])
    samples = [(torch.from_numpy(preprocess(s, pre)),) for s in sources[:2]]
    golden = golden_from_model(model, samples, model.io_spec)
    out = tmp_path_factory.mktemp("vectors") / "b"
    with BundleWriter(out, name="vec", version="0.1.0", task="generic", inputs=model.io_spec.inputs,
                      outputs=model.io_spec.outputs, preprocessing=pre) as w:
        w.set_golden(*golden)
        record = write_test_vectors(w, model, pre, sources)
        export_artifact(w, model, samples[0], "onnx", golden=golden)
        w.commit()
    return out, record, sources, pre


def test_bundle_carries_test_vectors_that_pass(vector_bundle):
    from edgecart.runtime import load

    path, record, _, _ = vector_bundle
    b = open_bundle(path)
    assert [v["name"] for v in record["vectors"]] == ["photo", "rotated", "transparent", "gray"]
    assert b.manifest.quality["test_vectors"] == record
    roles = {f.path: f.role for f in b.manifest.files}
    for v in record["vectors"]:
        assert roles[v["image"]] == roles[v["input"]] == roles[v["expected"]] == "golden"
    with Image.open(b.path(record["vectors"][0]["image"])) as im:
        assert im.format == "JPEG"
    with Image.open(b.path(record["vectors"][2]["image"])) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
    rows = check_test_vectors(b, load(b, "onnxruntime").run)
    assert len(rows) == 4
    for r in rows:
        assert r["input_ok"] and r["input_max_abs_diff"] == 0.0, r
        assert r["output_max_abs_diff"] < 1e-4 and r["output_cosine"] > 0.9999, r


def test_test_vectors_catch_the_usual_app_mistakes(vector_bundle):
    """An app that ignores EXIF, drops alpha (black), or feeds BGR is far outside the stated tolerance."""
    path, record, _, pre = vector_bundle
    b = open_bundle(path)
    rows = {r["name"]: r for r in check_test_vectors(b)}
    tol = rows["photo"]["input_tolerance"]
    vec = {v["name"]: v for v in record["vectors"]}

    def app(name, decode):
        with Image.open(b.path(vec[name]["image"])) as im:
            x = normalise_app(decode(im), pre)
        return float(np.abs(x - b.load_npy(vec[name]["input"])).max())

    def normalise_app(a, pre):
        return preprocess(np.ascontiguousarray(a), pre)

    assert app("rotated", lambda im: np.asarray(im.convert("RGB"))) > 20 * tol  # EXIF ignored
    assert app("transparent", lambda im: np.asarray(im.convert("RGB"))) > 20 * tol  # alpha dropped
    assert app("photo", lambda im: np.asarray(im.convert("RGB"))[..., ::-1]) > 5 * tol  # BGR
    assert app("photo", lambda im: np.asarray(im.convert("RGB"))) <= tol  # the right way passes


def test_check_command_runs_the_test_vectors(vector_bundle, capsys):
    from edgecart.cli import main

    path, _, _, _ = vector_bundle
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.count("test vector") == 4 and "OUT OF TOLERANCE" not in out


def test_a_test_vector_picture_swapped_after_opening_is_refused(vector_bundle, tmp_path):
    import shutil

    from edgecart.runtime import IntegrityError

    path, record, _, _ = vector_bundle
    copy = tmp_path / "b"
    shutil.copytree(path, copy)
    b = open_bundle(copy)  # verified here; the picture is replaced afterwards
    Image.fromarray(_picture(40, 36, seed=9)).save(copy / record["vectors"][0]["image"], format="JPEG")
    with pytest.raises(IntegrityError):
        check_test_vectors(b)
