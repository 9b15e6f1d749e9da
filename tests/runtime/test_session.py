"""Session input checks, backend selection, typed errors and thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from edgecart.runtime import (
    ArtifactNotFoundError,
    BackendUnavailableError,
    InputSpecError,
    UnknownNameError,
    load,
    select,
)
from edgecart.runtime.backends import Backend
from edgecart.runtime.golden import check_golden

BACKENDS = ("onnxruntime", "litert", "executorch")


@pytest.fixture(scope="module", params=BACKENDS)
def session(request, tiny_bundle):
    return load(tiny_bundle, request.param, precision="fp32", threads=1)


def test_golden_parity_on_this_machine(session):
    agree = check_golden(session)
    assert agree.samples == 4
    assert agree.max_abs_diff <= session.artifact.parity.max_abs_tolerance


@pytest.mark.parametrize("bad,match", [
    (np.zeros((1, 1, 32, 32), np.float32), "shape"),
    (np.zeros((1, 28, 28), np.float32), "shape"),
    (np.array([["a"] * 28] * 28).reshape(1, 1, 28, 28), "dtype"),
    ({"pixels": np.zeros((1, 1, 28, 28), np.float32)}, "missing"),
    ("not an array", "inputs must be"),
])
def test_bad_inputs_get_typed_errors(session, bad, match):
    with pytest.raises(InputSpecError, match=match):
        session.run(bad)


def test_nan_and_inf_refused_by_default(tiny_bundle):
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 3, 3] = np.nan
    with pytest.raises(InputSpecError, match="NaN"):
        load(tiny_bundle, "onnxruntime").run(x)
    out = load(tiny_bundle, "onnxruntime", check_finite=False).run(x)
    assert out["embedding"].shape == (1, 16)


@pytest.mark.parametrize("value", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("form", ["array", "dict", "list", "float64"])
def test_non_finite_refused_on_every_input_path(session, value, form):
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 27, 27] = value
    feeds = {"array": x, "dict": {"image": x}, "list": [x], "float64": x.astype(np.float64)}[form]
    with pytest.raises(InputSpecError, match="NaN or Inf"):
        session.run(feeds)


def test_huge_finite_inputs_are_not_mistaken_for_inf(session):
    """The quick check (a sum of squares) overflows for values near float32's limit; the exact check decides."""
    x = np.full((1, 1, 28, 28), 3e38, np.float32)
    assert session.run({"image": x})["embedding"].shape == (1, 16)  # accepted: no InputSpecError


def test_float64_and_dict_and_list_inputs_accepted(session):
    x = np.random.default_rng(3).standard_normal((1, 1, 28, 28))
    a = session.run(x)["embedding"]
    b = session.run({"image": x.astype(np.float32)})["embedding"]
    c = session.run([x])["embedding"]
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_concurrent_runs_give_the_same_answers(session):
    rng = np.random.default_rng(7)
    xs = [rng.standard_normal((1, 1, 28, 28)).astype(np.float32) for _ in range(8)]
    want = [session.run(x)["embedding"] for x in xs]
    errors: list[BaseException] = []
    got: dict[tuple[int, int], np.ndarray] = {}

    def worker(t: int) -> None:
        try:
            for rep in range(5):
                for i, x in enumerate(xs):
                    got[(t, rep * 100 + i)] = session.run(x)["embedding"]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for (_t, k), y in got.items():
        np.testing.assert_allclose(y, want[k % 100], atol=1e-6)


def test_auto_prefers_int8_and_numpy_only_engines(tiny_bundle):
    s = load(tiny_bundle)
    assert s.backend.name == "onnxruntime" and s.artifact.precision == "int8"
    assert load(tiny_bundle, precision="fp32").artifact.precision == "fp32"


def test_unknown_backend_lists_known(tiny_bundle):
    with pytest.raises(UnknownNameError, match="executorch, litert, onnxruntime"):
        load(tiny_bundle, "tensorrt")


def test_missing_artifact_says_what_exists(tiny_bundle):
    with pytest.raises(ArtifactNotFoundError, match="tiny.fp32.onnx"):
        load(tiny_bundle, artifact="nope")
    with pytest.raises(ArtifactNotFoundError, match="fp16"):
        load(tiny_bundle, precision="fp16")


def test_missing_engine_names_the_extra(tiny_bundle, monkeypatch):
    from edgecart.runtime import backends

    ghost = Backend("onnxruntime", "onnx", "no_such_engine_module", "onnx", lambda r: None)
    monkeypatch.setitem(backends.BACKENDS._items, "onnxruntime", ghost)
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgecart\[onnx\]'"):
        load(tiny_bundle, "onnxruntime")
    art, be = select(load(tiny_bundle, "litert").manifest)  # auto skips the missing engine
    assert be.name == "litert"


def test_bad_threads_refused(tiny_bundle):
    with pytest.raises(ValueError, match="threads"):
        load(tiny_bundle, "onnxruntime", threads=0)
