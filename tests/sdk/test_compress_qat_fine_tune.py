"""quantize_aware(): QAT on mini-batches of training inputs, the step chosen on a validation split."""

from __future__ import annotations

import pytest
import torch
from edgecart.compress import QAT, StaticInt8, quantize
from edgecart.compress.quantization import QATFineTune, _outputs, _sqnr, quantize_aware, quantize_batched
from edgecart.config import ConfigError

from ..conftest import _tiny_model


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(5)
    train = torch.randn(96, 1, 28, 28, generator=g)
    val = [(torch.randn(1, 1, 28, 28, generator=g),) for _ in range(12)]
    calib = [(train[i:i + 1],) for i in range(8)]
    return _tiny_model(), train, calib, val


def test_quantize_batched_has_the_numerics_of_quantize(data):
    model, _train, calib, val = data
    a = _outputs(quantize(model, StaticInt8(per_channel=False), calib[0], calib), val)
    b = quantize_batched(model, StaticInt8(per_channel=False), calib[0][0], calib)
    batched = b(torch.cat([v[0] for v in val]))  # one call on the whole batch: the graph is not batch-1 only
    assert torch.allclose(torch.cat(a), batched, atol=1e-5)


def test_quantize_aware_fine_tunes_and_returns_the_best_validation_step(data):
    model, train, calib, val = data
    before = [p.detach().clone() for p in model.parameters()]
    ref = _outputs(model, val)

    def evaluate(q):
        return _sqnr(ref, _outputs(q, val))[0]

    res = quantize_aware(model, QAT(per_channel=False), train, calib, evaluate,
                         QATFineTune(steps=10, batch_size=16, lr=1e-3, loss="mse", eval_every=10))
    scores = [h["score"] for h in res.history]
    assert [h["step"] for h in res.history] == [0, 10]
    assert res.best_score == max(scores) and res.history[scores.index(max(scores))]["step"] == res.best_step
    assert abs(evaluate(res.model) - res.best_score) < 1e-6  # the returned model IS the best step's
    # step 0 (calibration only) competes: a fine-tune that hurts on held-out inputs is not kept
    assert res.best_step == (10 if scores[1] > scores[0] else 0)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_qat_fine_tune_config_is_validated_and_round_trips():
    cfg = QATFineTune(steps=10, batch_size=4, relational=0.5)
    assert QATFineTune.from_dict(cfg.to_dict()) == cfg
    assert cfg.frozen_observers_at == 3
    with pytest.raises(ConfigError, match="known: cosine, mse"):
        QATFineTune(loss="kl")
    with pytest.raises(ConfigError, match="known: .*steps"):
        QATFineTune.from_dict({"step": 3})
    with pytest.raises(ConfigError, match="lr"):
        QATFineTune(lr=0)
    with pytest.raises(ConfigError, match="quantize_aware"):
        quantize_batched(_tiny_model(), QAT(), torch.zeros(1, 1, 28, 28), [(torch.zeros(1, 1, 28, 28),)])
