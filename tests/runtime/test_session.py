"""Session input checks, backend selection, typed errors and thread safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from edgecart.runtime import (
    ArtifactNotFoundError,
    BackendUnavailableError,
    InferenceError,
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
    """The quick check (a sum of squares) overflows for values near float32's limit; the exact check decides: the
    input passes, and the Inf the model makes of it is reported, not returned."""
    x = np.full((1, 1, 28, 28), 3e38, np.float32)
    with pytest.raises(InferenceError, match="NaN or Inf") as info:
        session.run({"image": x})
    assert session.artifact.path in str(info.value)
    assert not isinstance(info.value, InputSpecError)


@pytest.mark.parametrize("value", [1e38, 3e38])
def test_non_finite_outputs_raise_by_default_and_pass_when_asked(tiny_bundle, value):
    """A finite input that overflows inside the model gives Inf/NaN outputs: an error unless check_finite=False."""
    x = np.full((1, 1, 28, 28), value, np.float32)
    with pytest.raises(InferenceError, match="check_finite=False"):
        load(tiny_bundle, "onnxruntime", precision="fp32").run(x)
    out = load(tiny_bundle, "onnxruntime", precision="fp32", check_finite=False).run(x)["embedding"]
    assert out.shape == (1, 16) and not np.isfinite(out).all()


def test_wrong_size_outputs_raise(session):
    class Short:
        input_dtypes = session.engine.input_dtypes

        def run(self, feeds):
            return [np.zeros((1, 15), np.float32)]

    real, session.engine = session.engine, Short()
    try:
        with pytest.raises(InferenceError, match=r"shape \(1, 15\)"):
            session.run(np.zeros((1, 1, 28, 28), np.float32))
        session.engine.run = lambda feeds: []
        with pytest.raises(InferenceError, match="0 outputs"):
            session.run(np.zeros((1, 1, 28, 28), np.float32))
    finally:
        session.engine = real


def test_engine_failures_while_running_are_typed(session):
    class Broken:
        input_dtypes = session.engine.input_dtypes

        def run(self, feeds):
            raise RuntimeError("engine exploded")

    real, session.engine = session.engine, Broken()
    try:
        with pytest.raises(InferenceError, match="engine exploded") as info:
            session.run(np.zeros((1, 1, 28, 28), np.float32))
        assert session.artifact.path in str(info.value) and session.backend.name in str(info.value)
    finally:
        session.engine = real


def test_file_swapped_after_verification_is_caught(bundle_copy):
    """Verification and loading read the same bytes: a model replaced after open_bundle is refused, not loaded."""
    from edgecart.runtime import IntegrityError, open_bundle

    bundle = open_bundle(bundle_copy)
    model = bundle_copy / "models" / "tiny.fp32.onnx"
    model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    with pytest.raises(IntegrityError, match="tiny.fp32.onnx: sha256 .* differs from the manifest"):
        load(bundle, "onnxruntime", precision="fp32")


def test_executorch_thread_pool_is_sized_once(tiny_bundle):
    from edgecart.runtime.backends import executorch as et

    first = et.set_threadpool_once(1)
    assert first is not None
    with pytest.warns(RuntimeWarning, match="process-wide"):
        assert et.set_threadpool_once(first + 1) == first
    load(tiny_bundle, "executorch", precision="fp32", threads=first)  # the same size: no warning, no reset


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


def test_auto_prefers_int8_and_numpy_only_engines(tiny_bundle, monkeypatch):
    s = load(tiny_bundle)
    assert s.backend.name == "litert" and s.artifact.precision == "int8"
    assert load(tiny_bundle, precision="fp32").artifact.precision == "fp32"
    # without LiteRT, auto falls to ONNX Runtime, int8 first there too...
    from edgecart.runtime import backends, open_bundle

    ghost = Backend("litert", "tflite", "no_such_engine_module", "tflite", lambda r: None)
    monkeypatch.setitem(backends.BACKENDS._items, "litert", ghost)
    art, be = select(open_bundle(tiny_bundle).manifest)
    assert (be.name, art.precision) == ("onnxruntime", "int8")
    # ...unless fp32 is asked for
    assert select(open_bundle(tiny_bundle).manifest, precision="fp32")[0].precision == "fp32"


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


def _externalise_onnx(bundle, list_side_file: bool) -> None:
    """Move the fp32 ONNX model's weights to a side file (as torch.onnx's default export does) and rewrite the
    manifest; the side file is listed in the manifest only when asked."""
    import hashlib
    import json

    import onnx
    from onnx.external_data_helper import convert_model_to_external_data

    model_path = bundle / "models" / "tiny.fp32.onnx"
    m = onnx.load(model_path)
    convert_model_to_external_data(m, all_tensors_to_one_file=True, location="tiny.fp32.onnx.data",
                                   size_threshold=256)
    onnx.save_model(m, model_path)
    man = json.loads((bundle / "manifest.json").read_text())

    def entry(rel, role):
        data = (bundle / rel).read_bytes()
        return {"path": rel, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "role": role}

    man["files"] = [f for f in man["files"] if f["path"] != "models/tiny.fp32.onnx"]
    man["files"].append(entry("models/tiny.fp32.onnx", "model"))
    if list_side_file:
        man["files"].append(entry("models/tiny.fp32.onnx.data", "weights"))
        for a in man["artifacts"]:
            if a["name"] == "tiny.fp32.onnx":
                a["side_files"] = ["models/tiny.fp32.onnx.data"]
    (bundle / "manifest.json").write_text(json.dumps(man))


def test_onnx_external_weights_come_from_the_verified_side_file(tiny_bundle, bundle_copy):
    x = np.random.default_rng(2).standard_normal((1, 1, 28, 28)).astype(np.float32)
    want = load(tiny_bundle, "onnxruntime", precision="fp32").run(x)["embedding"]
    _externalise_onnx(bundle_copy, list_side_file=True)
    assert (bundle_copy / "models" / "tiny.fp32.onnx.data").stat().st_size > 1000
    np.testing.assert_array_equal(load(bundle_copy, "onnxruntime", precision="fp32").run(x)["embedding"], want)


def test_onnx_external_weights_not_in_the_manifest_are_never_read(bundle_copy, monkeypatch):
    """Loaded from bytes, ONNX Runtime would resolve external weights against the current directory; the runtime
    points it at a private folder holding only verified side files, so an unlisted weights file is not read."""
    from edgecart.runtime import ModelLoadError

    _externalise_onnx(bundle_copy, list_side_file=False)
    monkeypatch.chdir(bundle_copy / "models")  # the unlisted weights file sits right here
    with pytest.raises(ModelLoadError, match="tiny.fp32.onnx"):
        load(bundle_copy, "onnxruntime", precision="fp32", strict=False)


def test_engine_load_failures_are_typed_and_name_the_artifact(bundle_copy):
    """A model file the engine cannot parse (re-hashed, so integrity passes): ModelLoadError with the engine's
    message, for every backend."""
    import hashlib
    import json

    from edgecart.runtime import ModelLoadError

    man = json.loads((bundle_copy / "manifest.json").read_text())
    for f in man["files"]:
        if f["role"] == "model":
            data = (bundle_copy / f["path"]).read_bytes()[:100]
            (bundle_copy / f["path"]).write_bytes(data)
            f["sha256"], f["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    (bundle_copy / "manifest.json").write_text(json.dumps(man))
    for backend in BACKENDS:
        with pytest.raises(ModelLoadError) as info:
            load(bundle_copy, backend, precision="fp32")
        assert "models/tiny.fp32." in str(info.value)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_golden_parity_fails_on_nan_and_inf_outputs(bad):
    """A NaN output used to be recorded as max|Δ| = 0 (max(0.0, nan) is 0.0) and an Inf output got cosine 1.0."""
    from edgecart.runtime.golden import compare

    ref = np.ones((3, 1, 4), np.float32)
    ins = {"x": np.zeros((3, 1, 2), np.float32)}

    def run(feeds):
        y = np.ones((1, 4), np.float32)
        y[0, 1] = bad
        return {"y": y}

    agree = compare(run, ins, {"y": ref}, ["y"])
    assert agree.non_finite == 3 and agree.max_abs_diff == np.inf and agree.cosine == -1.0
    assert not agree.within(1e3, -1.0) and not agree.within(None, None)
    fine = compare(lambda feeds: {"y": np.ones((1, 4), np.float32)}, ins, {"y": ref}, ["y"])
    assert fine.non_finite == 0 and fine.max_abs_diff == 0.0 and fine.cosine == pytest.approx(1.0)
    assert fine.within(1e-6, 0.9999)
    ref_bad = ref.copy()
    ref_bad[1, 0, 0] = bad  # a broken reference fails too
    assert compare(lambda feeds: {"y": np.ones((1, 4), np.float32)}, ins, {"y": ref_bad}, ["y"]).non_finite == 1


def test_golden_check_counts_non_finite_outputs_from_a_real_session_and_self_test_refuses(tiny_bundle, bundle_copy):
    from edgecart.runtime import ParityError
    from edgecart.runtime.golden import check_golden

    s = load(tiny_bundle, "onnxruntime", precision="fp32")
    real = s.engine.run
    s.engine.run = lambda feeds: [np.full((1, 16), np.inf, np.float32)]  # what an overflowing model returns
    try:
        agree = check_golden(s)  # the session's NonFiniteOutputError counts as a failed sample, not a crash
        assert agree.non_finite == agree.samples == 4
        with pytest.raises(ParityError, match="4 of 4 samples NaN/Inf"):
            check_golden(s, require=True)
        s.engine.run = lambda feeds: [real(feeds)[0] * 1.01]  # a model whose weights changed a little
        with pytest.raises(ParityError, match="disagrees with the bundle's golden outputs"):
            check_golden(s, require=True)
    finally:
        s.engine.run = real
    assert check_golden(s, require=True).within(1e-3, 0.9999)
    assert load(tiny_bundle, "onnxruntime", precision="fp32", self_test=True).artifact.precision == "fp32"


def test_int8_parity_has_a_max_abs_bound():
    from edgecart.exporters.export import DEFAULT_TOLERANCE

    max_abs, min_cos = DEFAULT_TOLERANCE.for_precision("int8")
    assert max_abs is not None and 0 < max_abs <= 1.0 and min_cos is not None
