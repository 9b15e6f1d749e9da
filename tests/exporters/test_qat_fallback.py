"""The QAT fallback of the int8 gate runs the mini-batch QAT procedure (``qat_fine_tune``): a per-tensor PTQ recipe
the gate rejects, rescued by QAT on training inputs with the step picked on validation inputs; the calibration-only
split; the recipe's configuration checks."""

from __future__ import annotations

import json

import pytest
import torch
from edgecart.config import ConfigError
from edgecart.exporters import (
    QAT,
    BundleWriter,
    QATData,
    QATDataError,
    QualityGate,
    StaticInt8,
    export_int8_gated,
    golden_from_model,
    infer_io_spec,
    qat_rescue,
)
from edgecart.exporters.gate import export_formats_gated
from edgecart.exporters.recipes import recipe_from_dict, recipe_to_dict
from torch import nn

BAR_DB = 25.0  # the gate: the int8 outputs must reach this SQNR against the float model's


class RoundingNet(nn.Module):
    """One linear layer whose weights all sit 0.45 of an int8 step above a grid point (one weight pins the
    per-tensor scale at 0.01): round-to-nearest PTQ drops every weight by 0.45 step, a coherent error on the
    non-negative inputs that no calibration fixes and that a fine-tune of weights and bias removes."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.fc = nn.Linear(64, 8)
        w = (torch.randint(-60, 60, (8, 64), generator=g).float() + 0.45) * 0.01
        w[:, 0] = 1.27
        with torch.no_grad():
            self.fc.weight.copy_(w)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def _inputs(n: int, seed: int) -> list[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(1, 64, generator=g),) for _ in range(n)]


def _sqnr_evaluator(model: nn.Module, inputs: list[tuple[torch.Tensor]]):
    with torch.no_grad():
        ref = torch.cat([model(*b) for b in inputs]).double()

    def evaluate(session) -> dict[str, float]:
        got = torch.cat([torch.from_numpy(session.run(b[0].numpy())["output_0"]) for b in inputs]).double()
        noise = float(((ref - got) ** 2).sum())
        return {"sqnr_db": 10 * torch.log10(ref.pow(2).sum() / max(noise, 1e-30)).item()}

    return evaluate


FAST = QAT(per_channel=False, steps=60, batch_size=16, lr=3e-3, loss="mse", eval_every=20)


@pytest.fixture(scope="module")
def setup():
    model = RoundingNet().eval()
    calib, train, val, gate_val = _inputs(16, 1), _inputs(128, 2), _inputs(16, 3), _inputs(16, 4)
    io = infer_io_spec(model, calib[0])
    return model, calib, train, val, gate_val, io, golden_from_model(model, gate_val[:2], io)


def _writer(tmp_path, io):
    return BundleWriter(tmp_path / "b", name="rounding", version="0.1.0", task="generic", inputs=io.inputs,
                        outputs=io.outputs)


def test_gate_rejects_ptq_and_the_qat_fallback_rescues_it_with_training_inputs(tmp_path, setup):
    model, calib, train, val, gate_val, io, golden = setup
    evaluate = _sqnr_evaluator(model, gate_val)
    with _writer(tmp_path, io) as w:
        w.set_golden(*golden)
        done = export_formats_gated(w, model, calib[0], ["executorch"], golden=golden, evaluate=evaluate, int8=True,
                                    gate=QualityGate("sqnr_db", 0.0), calibration=calib,
                                    reference={"sqnr_db": BAR_DB}, recipes=[StaticInt8(per_channel=False)],
                                    qat_data=QATData(train, val), rescue=qat_rescue(FAST))
        art = done["executorch"].int8
        assert art is not None, w.quality.get("int8_rejected")
        q = art.quantization
        ptq, qat = q["gate"]["attempts"]
        assert ptq["stage"] == "recipe" and not ptq["passed"] and ptq["sqnr_db"] < BAR_DB  # PTQ is rejected
        assert qat["stage"] == "rescue" and qat["passed"] and q["recipe"] == "qat-int8-per-tensor"
        assert art.quality["sqnr_db"] >= BAR_DB and art.quality["sqnr_db"] > ptq["sqnr_db"] + 5
        ft = q["fine_tune"]
        assert ft["train_samples"] == 128 and ft["validation_samples"] == 16 and "given by the caller" in ft["source"]
        assert ft["best_step"] > 0 and ft["history"][0]["step"] == 0  # the fine-tune, not step 0, is kept
        assert q["config"] == recipe_to_dict(FAST)
        w.commit()


def test_without_the_fine_tune_the_fallback_does_not_pass(tmp_path, setup):
    """The rescue above is the fine-tune's doing: the same QAT with a learning rate too small to move the weights
    keeps step 0 (calibrated fake-quantization only), and the gate still rejects it."""
    model, calib, train, val, gate_val, io, golden = setup
    with _writer(tmp_path, io) as w:
        w.set_golden(*golden)
        art = export_int8_gated(w, model, calib[0], "executorch", calibration=calib, golden=golden,
                                evaluate=_sqnr_evaluator(model, gate_val), reference={"sqnr_db": BAR_DB},
                                gate=QualityGate("sqnr_db", 0.0), recipes=[],
                                rescue=qat_rescue(QAT(per_channel=False, steps=20, lr=1e-9, eval_every=20)),
                                qat_data=QATData(train, val))
        assert art is None
        (attempt,) = w.quality["int8_rejected"]["executorch"]["attempts"]
        assert attempt["recipe"] == "qat-int8-per-tensor" and attempt["sqnr_db"] < BAR_DB


def test_calibration_only_qat_splits_the_calibration_inputs_and_says_so(tmp_path, setup):
    model, calib, _train, _val, gate_val, io, golden = setup
    with _writer(tmp_path, io) as w:
        w.set_golden(*golden)
        art = export_int8_gated(w, model, calib[0], "executorch", calibration=calib, golden=golden,
                                evaluate=_sqnr_evaluator(model, gate_val), reference={"sqnr_db": BAR_DB},
                                gate=QualityGate("sqnr_db", 0.0), recipes=[FAST])
        assert art is not None, w.quality.get("int8_rejected")
        ft = art.quantization["fine_tune"]
        assert (ft["train_samples"], ft["validation_samples"]) == (12, 4)
        assert "split deterministically" in ft["source"] and "12 fine-tuned on and 4 held out" in ft["source"]


def test_calibration_split_is_deterministic_disjoint_and_checked():
    calib = _inputs(10, 7)
    a, b = QATData.from_calibration(calib, 0.25, seed=0), QATData.from_calibration(calib, 0.25, seed=0)
    assert len(a.train) == 7 and len(a.validation) == 3
    ids = lambda d: [float(t[0][0, 0]) for t in d]  # noqa: E731
    assert ids(a.train) == ids(b.train) and ids(a.validation) == ids(b.validation)
    assert not set(ids(a.train)) & set(ids(a.validation))
    assert sorted(ids(a.train) + ids(a.validation)) == sorted(ids(calib))
    assert ids(QATData.from_calibration(calib, 0.25, seed=1).validation) != ids(a.validation)
    with pytest.raises(QATDataError, match="at least 3"):
        QATData.from_calibration(calib[:2])
    with pytest.raises(QATDataError, match="validation"):
        QATData(calib, [])
    with pytest.raises(QATDataError, match="at least 2 training"):
        QATData(calib[:1], calib)
    with pytest.raises(QATDataError, match="one tensor per model input"):
        QATData(calib, [(calib[0][0], calib[0][0])])


def test_tflite_refuses_qat_saying_why(tmp_path, setup):
    from edgecart.exporters import EXPORTERS, UnsupportedRecipeError, export_artifact

    model, calib, _train, _val, _gate_val, io, _golden = setup
    assert EXPORTERS["executorch"].supports(FAST) and not EXPORTERS["tflite"].supports(FAST)
    with _writer(tmp_path, io) as w, pytest.raises(UnsupportedRecipeError, match="litert-torch"):
        export_artifact(w, model, calib[0], "tflite", precision="int8", recipe=FAST, calibration=calib)


def test_qat_recipe_config_round_trips_and_is_validated():
    r = QAT(per_channel=False, steps=40, batch_size=8, lr=1e-4, loss="mse", eval_every=10, observer_steps=5,
            ema=0.9, holdout=0.3, exclude=("fc",), seed=3)
    assert recipe_from_dict(json.loads(json.dumps(recipe_to_dict(r)))) == r
    assert QAT.from_dict(r.to_dict()) == r and r.frozen_observers_at == 5 and QAT(steps=30).frozen_observers_at == 10
    assert recipe_from_dict({"kind": "qat", "steps": 50, "lr": 1e-4, "loss": "match_float"}).steps == 50  # old
    for bad, match in [({"batch_size": 0}, "batch_size"), ({"lr": 1.5}, "lr"), ({"loss": "kl"}, "known: cosine"),
                       ({"ema": 1.0}, "ema"), ({"holdout": 0}, "holdout"), ({"eval_every": True}, "eval_every"),
                       ({"observer_steps": -1}, "observer_steps"), ({"per_channel": "yes"}, "per_channel")]:
        with pytest.raises(ConfigError, match=match):
            QAT(**bad)
    with pytest.raises(ConfigError, match="known: .*batch_size"):
        recipe_from_dict({"kind": "qat", "batchsize": 8})


def test_the_image_search_writer_falls_back_to_qat_on_its_own_inputs(tmp_path, monkeypatch):
    """The image pipeline's bundle writer hands the gate its training and validation pictures: when every PTQ recipe
    misses the bar (here a bar no int8 can reach), the gate tries QAT on ExecuTorch, fine-tuned on the training
    pictures with the step picked on the validation queries, and records the attempt."""
    from edgecart.exporters import gate as gate_module
    from edgecart.runtime.search import Catalog
    from edgecart.vision.config import ExportConfig
    from edgecart.vision.export import export_search_bundle
    from edgecart.vision.train import embed

    from ..conftest import _tiny_model
    from ..reliability.test_bundle_schema import PRE, _gallery

    monkeypatch.setattr(gate_module, "FALLBACK_QAT", QAT(steps=6, batch_size=8, eval_every=3))  # a short fine-tune
    model = _tiny_model(seed=3)
    gallery = _gallery()
    emb = embed(model, gallery.images, PRE, desc="")
    queries, labels = gallery.images[::2], gallery.labels[::2]
    Catalog(gallery.ids, gallery.labels, gallery.classes, emb, None, "cosine", "student", "fp32")
    reference = {"recall@1": 2.0, "recall@10": 2.0, "map@10": 2.0}  # above any reachable figure: PTQ is rejected
    _path, gates = export_search_bundle(
        tmp_path / "search", model, name="qat-search", version="0.0.1", pre=PRE, gallery=gallery, catalog_emb=emb,
        catalog_by="student", catalog_model={"model": "tiny"}, golden_images=gallery.images[:2],
        cfg=ExportConfig(formats=("executorch",), golden=2, calibration=8, gate_max_drop=0.0), quality={},
        int8=True, calibration_images=gallery.images[:8], query_images=queries, query_labels=labels,
        reference=reference, qat_train_images=gallery.images)
    attempts = gates["executorch"]["attempts"]
    assert [a["stage"] for a in attempts][-1] == "rescue" and attempts[-1]["recipe"].startswith("qat-int8")
    assert "drop" in attempts[-1], attempts[-1]["reason"]  # it ran and was scored (not a toolchain failure)
    assert attempts[-1]["config"]["steps"] == 6
    assert [a["recipe"] for a in attempts[:-1]] == ["static-int8-per-channel", "static-int8-per-tensor"]
