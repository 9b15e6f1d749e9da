"""Every task input wrong, on every backend: a Session's tensors, ImageSearch's pictures and k, Recommender's item ids
and k. Each case must end in a typed ``EdgecartError`` or in a correct result (checked against a reference); the
tally of untyped errors and wrong successes must be zero. Plus: 8 threads x 100 calls equal a serial run.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from edgecart.runtime import EdgecartError, NonFiniteOutputError, load

from ..conftest import BACKEND_OF, FORMATS
from ..runtime.test_recommender import SHOP_IDS, rec_bundle  # noqa: F401  (fixture)
from ..runtime.test_search import search_bundle  # noqa: F401  (fixture)

BACKENDS = [BACKEND_OF[f] for f in FORMATS]
MUST_FAIL = None  # a case whose only acceptable end is a typed error
FINITE = "finite"  # a case that may fail (typed) or return, but never return NaN/Inf


class Tally:
    """Outcome of each case: typed / correct / untyped / wrong (a success that should have failed or is off)."""

    def __init__(self) -> None:
        self.cases: dict[str, list[str]] = {"typed": [], "correct": [], "untyped": [], "wrong": []}

    def run(self, name: str, call: Callable[[], Any], check: Callable[[Any], bool] | None) -> None:
        try:
            result = call()
        except EdgecartError:
            self.cases["typed"].append(name)
            return
        except Exception as exc:  # noqa: BLE001  (what this test counts)
            self.cases["untyped"].append(f"{name}: {type(exc).__name__}: {str(exc)[:150]}")
            return
        ok = check is not None and bool(check(result))
        self.cases["correct" if ok else "wrong"].append(name)

    def assert_clean(self, label: str, n: int) -> None:
        summary = {k: len(v) for k, v in self.cases.items()}
        print(f"{label}: {n} cases -> {summary}")
        assert sum(summary.values()) == n
        assert not self.cases["untyped"], self.cases["untyped"]
        assert not self.cases["wrong"], self.cases["wrong"]


# -- Session: tensors ------------------------------------------------------------------------------------------------

def _session_cases(x: np.ndarray) -> dict[str, tuple[Any, Any]]:
    """name -> (inputs, the equivalent float32 input a correct run must match, or MUST_FAIL)."""
    nan, inf = x.copy(), x.copy()
    nan[0, 0, 5, 5] = np.nan
    inf[0, 0, 0, 0] = np.inf
    ninf = -inf
    f = np.asfortranarray(x)
    big = np.full_like(x, 1e38)
    return {
        "name-wrong": ({"pixels": x}, MUST_FAIL),
        "name-extra": ({"image": x, "mask": x}, MUST_FAIL),
        "name-none": ({}, MUST_FAIL),
        "not-an-array-none": (None, MUST_FAIL),
        "not-an-array-str": ("image.png", MUST_FAIL),
        "not-an-array-bytes": (x.tobytes(), MUST_FAIL),
        "not-an-array-int": (3, MUST_FAIL),
        "list-too-long": ([x, x], MUST_FAIL),
        "list-empty": ([], MUST_FAIL),
        "dtype-str": (np.full(x.shape, "a"), MUST_FAIL),
        "dtype-object": (x.astype(object), MUST_FAIL),
        "dtype-complex": (x.astype(np.complex64), MUST_FAIL),
        "dtype-bool": (x > 0, MUST_FAIL),
        "dtype-datetime": (np.zeros(x.shape, "datetime64[s]"), MUST_FAIL),
        "rank-2": (x[0, 0], MUST_FAIL),
        "rank-3": (x[0], MUST_FAIL),
        "rank-5": (x[None], MUST_FAIL),
        "rank-0": (np.float32(1.0), MUST_FAIL),
        "shape-larger": (np.zeros((1, 1, 32, 32), np.float32), MUST_FAIL),
        "shape-batch-2": (np.concatenate([x, x]), MUST_FAIL),
        "shape-channels-3": (np.repeat(x, 3, axis=1), MUST_FAIL),
        "empty-batch": (np.zeros((0, 1, 28, 28), np.float32), MUST_FAIL),
        "empty-rows": (np.zeros((1, 1, 0, 28), np.float32), MUST_FAIL),
        "empty-flat": (np.zeros((0,), np.float32), MUST_FAIL),
        "huge-image": (np.zeros((1, 1, 4096, 4096), np.float32), MUST_FAIL),
        "nan-one-pixel": (nan, MUST_FAIL),
        "inf-one-pixel": (inf, MUST_FAIL),
        "minus-inf-one-pixel": (ninf, MUST_FAIL),
        "nan-everywhere": (np.full_like(x, np.nan), MUST_FAIL),
        "nan-in-float64": (nan.astype(np.float64), MUST_FAIL),
        # fp32 artifacts overflow to Inf (refused: NonFiniteOutputError); int8 ones saturate at their calibrated
        # input range and return a finite answer — either is acceptable, Inf returned is not
        "finite-1e38-overflows-inside": (big, FINITE),
        # valid in another form: must give the same answer as the plain float32 input
        "ok-float64": (x.astype(np.float64), x),
        "ok-float16": (x.astype(np.float16), x.astype(np.float16).astype(np.float32)),
        "ok-int64": (np.rint(x * 10).astype(np.int64), np.rint(x * 10).astype(np.float32)),
        "ok-uint8": (np.full(x.shape, 3, np.uint8), np.full(x.shape, 3, np.float32)),
        "ok-fortran-order": (f, x),
        "ok-strided-view": (np.repeat(x, 2, axis=3)[..., ::2], x),
        "ok-dict": ({"image": x}, x),
        "ok-list": ([x], x),
        "ok-tuple": ((x,), x),
        "ok-nested-list": (x.tolist(), x),
        "ok-zeros": (np.zeros_like(x), np.zeros_like(x)),
        "ok-large-finite": (np.full_like(x, 1e3), np.full_like(x, 1e3)),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_wrong_session_input_is_typed_or_correct(tiny_bundle, backend):
    x = np.random.default_rng(5).standard_normal((1, 1, 28, 28)).astype(np.float32)
    tally, cases = Tally(), _session_cases(x)
    for prec in ("fp32", "int8"):
        s = load(tiny_bundle, backend, precision=prec, threads=1)
        for name, (inputs, same_as) in cases.items():
            check = None
            if same_as is FINITE:
                check = lambda out: all(np.isfinite(v).all() for v in out.values())  # noqa: E731
            elif same_as is not None:
                want = s.run(np.ascontiguousarray(same_as, np.float32))["embedding"]
                check = lambda out, want=want: np.allclose(out["embedding"], want, atol=1e-5)  # noqa: E731
            tally.run(f"{prec}-{name}", lambda s=s, inputs=inputs: s.run(inputs), check)
    tally.assert_clean(f"session/{backend}", 2 * len(cases))
    # the refusals say what is wrong
    s = load(tiny_bundle, backend, precision="fp32")
    with pytest.raises(NonFiniteOutputError, match="NaN or Inf"):
        s.run(cases["finite-1e38-overflows-inside"][0])


# -- ImageSearch: pictures and k ---------------------------------------------------------------------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (a decompression bomb's signature), with valid CRCs."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def _image_files(tmp_path, picture: np.ndarray) -> dict[str, Any]:
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(picture).save(good)
    data = good.read_bytes()
    files = {"text.png": b"this is not a picture\n", "empty.png": b"", "random.png": bytes(range(256)) * 8,
             "truncated.png": data[: len(data) // 2], "header-only.png": data[:8],
             "bomb.png": _png_claiming(100_000, 100_000), "jpeg-named-png.png": b"\xff\xd8\xff\xe0" + bytes(64)}
    out: dict[str, Any] = {}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        out[f"file-{name}"] = tmp_path / name
    out["file-missing"] = tmp_path / "nope.png"
    out["file-directory"] = tmp_path
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_wrong_image_search_input_is_typed_or_correct(search_bundle, backend, tmp_path):  # noqa: F811
    from edgecart.runtime.search import ImageSearch
    from PIL import Image

    path, gallery, _ = search_bundle
    s = ImageSearch(path, backend, catalog_precision="fp32")
    picture = gallery.images[4]
    ref = s.search(picture, k=5)

    def same_as(want):
        return lambda r: r.ids == want.ids and np.allclose(r.scores, want.scores, atol=1e-5)

    def well_formed(k):
        return lambda r: (len(r) == min(k, len(s.catalog)) and list(r.scores) == sorted(r.scores, reverse=True)
                          and set(r.ids) <= set(s.catalog.ids))

    good = tmp_path / "good.png"
    Image.fromarray(picture).save(good)
    cases: dict[str, tuple[Callable[[], Any], Any]] = {
        **{name: (lambda p=p: s.search(p, k=5), MUST_FAIL) for name, p in _image_files(tmp_path, picture).items()},
        "array-float": (lambda: s.search(picture.astype(np.float32), k=5), MUST_FAIL),
        "array-int64": (lambda: s.search(picture.astype(np.int64), k=5), MUST_FAIL),
        "array-rgba": (lambda: s.search(np.zeros((28, 28, 4), np.uint8), k=5), MUST_FAIL),
        "array-empty": (lambda: s.search(np.zeros((0, 28), np.uint8), k=5), MUST_FAIL),
        "array-1d": (lambda: s.search(np.zeros(784, np.uint8), k=5), MUST_FAIL),
        "array-4d": (lambda: s.search(np.zeros((1, 28, 28, 3), np.uint8), k=5), MUST_FAIL),
        "array-huge": (lambda: s.search(np.zeros((10_000, 10_000), np.uint8), k=5), MUST_FAIL),
        "not-an-image-none": (lambda: s.search(None, k=5), MUST_FAIL),
        "not-an-image-int": (lambda: s.search(7, k=5), MUST_FAIL),
        "not-an-image-bytes": (lambda: s.search(picture.tobytes(), k=5), MUST_FAIL),
        "not-an-image-list": (lambda: s.search(picture.tolist(), k=5), MUST_FAIL),
        "k-0": (lambda: s.search(picture, k=0), MUST_FAIL),
        "k-negative": (lambda: s.search(picture, k=-3), MUST_FAIL),
        "k-float": (lambda: s.search(picture, k=2.5), MUST_FAIL),
        "k-string": (lambda: s.search(picture, k="5"), MUST_FAIL),
        "k-none": (lambda: s.search(picture, k=None), MUST_FAIL),
        "k-bool": (lambda: s.search(picture, k=True), MUST_FAIL),
        "embedding-wrong-dim": (lambda: s.search_embedding(np.zeros(3, np.float32), k=5), MUST_FAIL),
        "embedding-nan": (lambda: s.search_embedding(np.full(s.catalog.embeddings.shape[1], np.nan), k=5),
                          MUST_FAIL),
        "embedding-inf": (lambda: s.search_embedding(np.full(s.catalog.embeddings.shape[1], np.inf), k=5),
                          MUST_FAIL),
        "embedding-strings": (lambda: s.search_embedding(np.array(["a"] * s.catalog.embeddings.shape[1]), k=5),
                              MUST_FAIL),
        "ok-png-file": (lambda: s.search(good, k=5), same_as(ref)),
        "ok-path-string": (lambda: s.search(str(good), k=5), same_as(ref)),
        "ok-pil-image": (lambda: s.search(Image.fromarray(picture), k=5), same_as(ref)),
        "ok-hw1-array": (lambda: s.search(picture[..., None], k=5), same_as(ref)),
        "ok-k-numpy-int": (lambda: s.search(picture, k=np.int64(5)), same_as(ref)),
        "ok-k-huge": (lambda: s.search(picture, k=10**9), well_formed(10**9)),
        "ok-k-1": (lambda: s.search(picture, k=1), lambda r: r.ids == ref.ids[:1]),
        "ok-rgb-larger": (lambda: s.search(np.repeat(np.kron(picture, np.ones((3, 3), np.uint8))[..., None], 3, -1),
                                           k=5), well_formed(5)),
        "ok-tiny-1x1": (lambda: s.search(np.full((1, 1), 200, np.uint8), k=5), well_formed(5)),
        "ok-large-2000x2000": (lambda: s.search(np.zeros((2000, 2000), np.uint8), k=5), well_formed(5)),
    }
    tally = Tally()
    for name, (call, check) in cases.items():
        tally.run(name, call, check)
    tally.assert_clean(f"image-search/{backend}", len(cases))


# -- Recommender: item ids and k ------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_every_wrong_recommender_input_is_typed_or_correct(rec_bundle, backend):  # noqa: F811
    from edgecart.runtime.recommender import Recommender

    path, _ = rec_bundle
    r = Recommender(path, backend=backend)
    known = [int(i) for i in SHOP_IDS[:3]]
    with_known = r.recommend(known, k=5)
    cold = r.recommend([], k=5)

    def same_as(want, unknown=None):
        def check(got):
            return (got.items == want.items and got.source == want.source
                    and (unknown is None or list(got.unknown) == list(unknown)))
        return check

    unknowns = {"unknown-id": [99999], "negative-id": [-1], "zero-id": [0], "huge-id": [10**30],
                "string-id": ["not-an-item"], "nan-id": [float("nan")], "inf-id": [float("inf")], "none-id": [None],
                "5000-digit-string-id": ["9" * 5000], "superscript-digit-id": ["²"], "bytes-id": [b"1001"],
                "bool-id": [True], "float-fraction-id": [1001.5]}
    cases: dict[str, tuple[Callable[[], Any], Any]] = {
        **{name: (lambda h=h: r.recommend(h, k=5), same_as(cold, h)) for name, h in unknowns.items()},
        **{f"{name}-with-known": (lambda h=h: r.recommend(known + h, k=5), same_as(with_known, h))
           for name, h in unknowns.items()},
        "history-a-string": (lambda: r.recommend("1001", k=5), MUST_FAIL),
        "history-bytes": (lambda: r.recommend(b"1001", k=5), MUST_FAIL),
        "history-none": (lambda: r.recommend(None, k=5), MUST_FAIL),
        "history-an-int": (lambda: r.recommend(1001, k=5), MUST_FAIL),
        "id-a-list": (lambda: r.recommend([[1001]], k=5), MUST_FAIL),
        "id-a-dict": (lambda: r.recommend([{"id": 1001}], k=5), MUST_FAIL),
        "k-0": (lambda: r.recommend(known, k=0), MUST_FAIL),
        "k-negative": (lambda: r.recommend(known, k=-1), MUST_FAIL),
        "k-float": (lambda: r.recommend(known, k=2.0), MUST_FAIL),
        "k-string": (lambda: r.recommend(known, k="5"), MUST_FAIL),
        "k-none": (lambda: r.recommend(known, k=None), MUST_FAIL),
        "k-bool": (lambda: r.recommend(known, k=True), MUST_FAIL),
        "similar-k-0": (lambda: r.similar(known[0], k=0), MUST_FAIL),
        "similar-k-string": (lambda: r.similar(known[0], k="3"), MUST_FAIL),
        "similar-id-a-list": (lambda: r.similar([1001], k=3), MUST_FAIL),
        "ok-empty-history": (lambda: r.recommend([], k=5), same_as(cold)),
        "ok-string-ids": (lambda: r.recommend([str(i) for i in known], k=5), same_as(with_known)),
        "ok-float-ids": (lambda: r.recommend([float(i) for i in known], k=5), same_as(with_known)),
        "ok-numpy-ids": (lambda: r.recommend(np.asarray(known), k=5), same_as(with_known)),
        "ok-generator": (lambda: r.recommend((i for i in known), k=5), same_as(with_known)),
        "ok-long-history": (lambda: r.recommend(known * 2000, k=5),
                            lambda g: g.used == r.max_len and len(g) == 5 and g.source == "model"),
        "ok-k-huge": (lambda: r.recommend(known, k=10**9),
                      lambda g: len(g) == r.num_items - len(set(known)) and not set(g.items) & set(known)),
        "ok-similar-unknown": (lambda: r.similar(99999, k=3), lambda g: len(g) == 0 and g.unknown == (99999,)),
    }
    tally = Tally()
    for name, (call, check) in cases.items():
        tally.run(name, call, check)
    tally.assert_clean(f"recommender/{backend}", len(cases))


# -- threads -------------------------------------------------------------------------------------------------------

def _hammer(s, xs: list[np.ndarray], threads: int = 8, calls: int = 100) -> tuple[dict, list[BaseException]]:
    """``threads`` threads, started together, each making ``calls`` calls; returns outputs by (thread, call)."""
    got: dict[tuple[int, int], np.ndarray] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def worker(t: int) -> None:
        try:
            start.wait()
            for call in range(calls):
                got[(t, call)] = s.run(xs[(t + call) % len(xs)])["embedding"].copy()
        except BaseException as exc:  # noqa: BLE001  (surfaced by the caller)
            errors.append(exc)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    return got, errors


@pytest.mark.parametrize("backend", BACKENDS)
def test_eight_threads_times_100_calls_equal_a_serial_run(tiny_bundle, backend):
    rng = np.random.default_rng(9)
    xs = [rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(10)]
    for prec in ("fp32", "int8"):
        s = load(tiny_bundle, backend, precision=prec, threads=1)
        serial = [s.run(x)["embedding"].copy() for x in xs]
        got, errors = _hammer(s, xs)
        assert not errors, errors[:3]
        assert len(got) == 800
        mismatched = [(t, c) for (t, c), y in got.items() if not np.array_equal(y, serial[(t + c) % len(xs)])]
        assert not mismatched, f"{prec}: {len(mismatched)} of 800 threaded calls differ from the serial run"
