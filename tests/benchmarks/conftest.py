"""Benchmark-test fixtures: one tiny 3-format fp32 bundle per session (TinyCNN via edgecart.exporters.export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def bench_bundle(tmp_path_factory) -> Path:
    torch = pytest.importorskip("torch")
    from edgecart.exporters import export
    from edgecart.models.tiny import TinyCNN

    torch.manual_seed(0)
    model = TinyCNN().eval()
    rng = np.random.default_rng(0)
    samples = [(torch.from_numpy(rng.standard_normal((1, 1, 28, 28)).astype(np.float32)),) for _ in range(3)]
    out = tmp_path_factory.mktemp("bench") / "tiny"
    export(model, samples[0], out=out, io_spec=model.io_spec, name="tiny", golden_inputs=samples)
    return out


@pytest.fixture()
def quiet_config():
    from edgecart.benchmarks import BenchConfig, BootstrapConfig

    def make(**kw):
        kw.setdefault("iterations", 20)
        kw.setdefault("bootstrap", BootstrapConfig(resamples=200))
        return BenchConfig(**kw)

    return make
