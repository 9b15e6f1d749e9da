"""``load(..., threads=)``: a count far beyond the machine's cores, and a value that is not a count, are typed errors
raised before any engine is asked (ONNX Runtime hung with 1,000 threads and ran out of memory with 100,000)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from edgecart.runtime import InputSpecError, load


@pytest.fixture()
def two_cores(monkeypatch):
    """This machine seen as a 2-core one: the bound is then 4 x 2 = 8 threads."""
    monkeypatch.setattr(os, "cpu_count", lambda: 2)


@pytest.mark.parametrize("backend", ["onnxruntime", "litert"])
def test_threads_far_beyond_the_cores_refused_before_the_engine(tiny_bundle, two_cores, backend):
    for n in (9, 1000, 100_000, np.int64(50)):  # 9 first: the old code handed it to the engine (it hung at 1000)
        with pytest.raises(InputSpecError) as err:
            load(tiny_bundle, backend, precision="fp32", threads=n)
        msg = str(err.value)
        assert "threads" in msg and f"got {int(n)}" in msg
        assert "1 to 8" in msg and "2 cores" in msg  # the range, and the machine's core count
        assert "None" in msg  # how to get the engine's default


def test_threads_up_to_four_per_core_and_numpy_integers_accepted(tiny_bundle, two_cores):
    assert load(tiny_bundle, "onnxruntime", precision="fp32", threads=8).threads == 8
    s = load(tiny_bundle, "onnxruntime", precision="fp32", threads=np.int32(2))
    assert s.threads == 2 and type(s.threads) is int
    assert load(tiny_bundle, "onnxruntime", precision="fp32", threads=None).threads is None
    y = s.run(np.zeros((1, 1, 28, 28), np.float32))["embedding"]
    assert y.shape == (1, 16)


def test_the_bound_follows_the_machine(tiny_bundle, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    with pytest.raises(InputSpecError, match=r"1 to 64 .*16 cores"):
        load(tiny_bundle, "onnxruntime", threads=65)
    monkeypatch.setattr(os, "cpu_count", lambda: None)  # unknown: counted as one core
    with pytest.raises(InputSpecError, match=r"1 to 4\b"):
        load(tiny_bundle, "onnxruntime", threads=5)


@pytest.mark.parametrize("bad", ["2", 1.5, 2.0, np.float32(2), True, False, [2], b"2"],
                         ids=["str", "float", "integral-float", "np-float", "True", "False", "list", "bytes"])
def test_threads_that_are_not_an_integer_get_a_typed_error(tiny_bundle, bad):
    with pytest.raises(InputSpecError) as err:
        load(tiny_bundle, "onnxruntime", precision="fp32", threads=bad)
    msg = str(err.value)
    assert "threads" in msg and "integer" in msg and "None" in msg
    assert type(bad).__name__ in msg  # says what was passed


@pytest.mark.parametrize("bad", [0, -1, np.int64(-3)])
def test_threads_below_one_refused(tiny_bundle, bad):
    with pytest.raises(InputSpecError, match=r"threads .*1 to \d+"):
        load(tiny_bundle, "onnxruntime", threads=bad)
