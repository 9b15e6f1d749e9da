"""TextSearch and the tokenizer path on a tiny text bundle built here (a 1-layer student, a dozen texts, the real
MiniLM tokenizer reduced to their word pieces)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest
from edgecart.runtime import BackendUnavailableError, BundleError, InputSpecError, IntegrityError
from edgecart.runtime.manifest import Manifest, TextPreprocessing

pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")

TEXTS = ("The dress runs small, I had to return it", "Love these jeans, perfect fit and soft denim",
         "The zipper of the dress broke after one wash", "Pants are too long for me but the fabric is great",
         "Beautiful summer dress with pockets", "These trousers wrinkle easily", "Silky slip dress, true to size",
         "Cropped jeans with a frayed hem", "A flowy maxi dress for the beach", "Corduroy pants in a warm rust colour")
DEPT = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
MAX_LEN = 16


def _student_and_tokenizer():
    from edgecart.models.text import minilm_dir
    from edgecart.text.config import StudentSize
    from edgecart.text.train import make_student
    from edgecart.text.vocab import reduce_tokenizer

    small, old = reduce_tokenizer((minilm_dir() / "tokenizer.json").read_text(), TEXTS, min_count=1)
    return make_student(StudentSize(32, 1, 2, 64, 1), len(old), MAX_LEN, 24, seed=0).eval(), small


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from edgecart.runtime.text import TextTokenizer
    from edgecart.text.bundle import CatalogTexts, EvalSet, write_text_bundle
    from edgecart.text.config import FAST
    from edgecart.text.train import embed

    model, small = _student_and_tokenizer()
    tok = TextTokenizer(small, TextPreprocessing("tokenizer.json", MAX_LEN))
    ids, mask = tok.encode_batch(list(TEXTS))
    emb = embed(model, ids, mask)
    rng = np.random.default_rng(0)
    heads = {"department": (rng.standard_normal((24, 2)).astype(np.float32), np.zeros(2, np.float32),
                            ("Dresses", "Bottoms"))}
    cat = CatalogTexts([f"t{i}" for i in range(len(TEXTS))], TEXTS, [("Dresses", "Bottoms")[d] for d in DEPT],
                       ["review"] * len(TEXTS), emb, "student")
    labels = {"department": DEPT, "class": DEPT}
    ev = EvalSet(ids, mask, labels)
    cfg = dataclasses.replace(FAST, max_len=MAX_LEN, int8=False)
    out = tmp_path_factory.mktemp("text") / "tiny-text"
    path, rows = write_text_bundle(out, model, small, cfg, name="tiny-text", catalog=cat, heads=heads,
                                   gallery_labels=DEPT, gallery_rows=len(TEXTS), valid=ev, test=ev,
                                   quality={"note": "test bundle"}, progress=None)
    return {"path": path, "model": model, "emb": emb, "heads": heads, "tok": tok, "rows": rows}


def test_bundle_holds_a_hashed_tokenizer_and_text_preprocessing(text_bundle):
    from edgecart.runtime import open_bundle

    m = open_bundle(text_bundle["path"]).manifest
    assert m.task == "text_search"
    assert isinstance(m.preprocessing, TextPreprocessing) and m.preprocessing.max_len == MAX_LEN
    assert m.file("tokenizer.json").bytes > 0
    assert [s.name for s in m.inputs] == ["input_ids", "attention_mask"]
    assert Manifest.from_json(m.to_json()) == m
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    schema = json.loads(files("edgecart.runtime").joinpath("manifest.schema.json").read_text())
    jsonschema.validate(json.loads((text_bundle["path"] / "manifest.json").read_text()), schema)
    assert all("test.recall@10" in a.quality for a in m.artifacts)


def test_search_matches_brute_force_on_the_eager_model(text_bundle):
    from edgecart.runtime.text import TextSearch

    s = TextSearch(text_bundle["path"], "onnxruntime")
    q = "my dress is too small"
    ids, mask = text_bundle["tok"].encode(q)
    with torch.no_grad():
        e = text_bundle["model"](torch.from_numpy(ids), torch.from_numpy(mask)).numpy()[0]
    want = np.argsort(-(text_bundle["emb"] @ e), kind="stable")[:3]
    hits = s.search(q, k=3)
    assert [h.id for h in hits] == [f"t{i}" for i in want]
    assert hits[0].score >= hits[1].score >= hits[2].score
    # a catalog text finds itself first
    assert s.search(TEXTS[4], k=1)[0].id == "t4"


def test_route_gives_probabilities_of_the_head(text_bundle):
    from edgecart.runtime.text import TextSearch, softmax

    s = TextSearch(text_bundle["path"], "onnxruntime")
    r = s.route("these jeans are great")
    ranked = r.heads["department"]
    assert {lab for lab, _ in ranked} == {"Dresses", "Bottoms"}
    assert abs(sum(p for _, p in ranked) - 1) < 1e-5
    w, b, labels = text_bundle["heads"]["department"]
    p = softmax(s.embed("these jeans are great") @ w + b)
    assert r.top("department") == (labels[int(np.argmax(p))], pytest.approx(float(p.max()), abs=1e-6))
    with pytest.raises(KeyError, match="department"):
        r.top("colour")


@pytest.mark.parametrize("text", ["", "   ", "word " * 5000, "Платье слишком маленькое", "この服は小さすぎます",
                                  "الفستان صغير جدا", "love it 😍🔥👗", "\u200b\u0000\ttabs\nand newlines"],
                         ids=["empty", "blank", "very-long", "cyrillic", "japanese", "arabic", "emoji", "control"])
def test_tokenizer_path_handles_any_text(text_bundle, text):
    from edgecart.runtime.text import TextSearch

    tok = text_bundle["tok"]
    ids, mask = tok.encode(text)
    assert ids.shape == mask.shape == (1, MAX_LEN) and ids.dtype == np.int64
    n = int(mask.sum())
    assert 2 <= n <= MAX_LEN and mask[0, :n].all() and not mask[0, n:].any()  # right padding
    assert (ids[0, n:] == 0).all()
    s = TextSearch(text_bundle["path"], "onnxruntime")
    hits = s.search(text, k=3)
    assert len(hits) == 3 and all(np.isfinite(h.score) for h in hits)
    assert np.isfinite([p for _, p in s.route(text).heads["department"]]).all()


def test_tokenizer_truncates_and_keeps_the_closing_token(text_bundle):
    tok = text_bundle["tok"]
    ids, mask = tok.encode("dress " * 100)
    assert mask.all()
    sep = tok._tok.token_to_id("[SEP]")
    assert ids[0, -1] == sep and ids[0, 0] == tok._tok.token_to_id("[CLS]")
    assert tok.tokens("") == ["[CLS]", "[SEP]"]
    assert "[UNK]" in tok.tokens("😍")  # an emoji is unknown to the vocabulary but does not fail


def test_bad_inputs_raise_typed_errors(text_bundle):
    from edgecart.runtime.text import TextSearch

    s = TextSearch(text_bundle["path"], "onnxruntime")
    with pytest.raises(InputSpecError):
        s.search(None, k=3)  # type: ignore[arg-type]
    with pytest.raises(InputSpecError):
        s.search("dress", k=0)
    with pytest.raises(InputSpecError):
        s.search_embedding(np.zeros(5, np.float32))


def test_wrong_task_and_missing_tokenizers_and_tampering(text_bundle, tmp_path, monkeypatch):
    from edgecart.runtime.text import TextSearch

    other = tmp_path / "other"
    shutil.copytree(text_bundle["path"], other)
    doc = json.loads((other / "manifest.json").read_text())
    doc["task"] = "generic"
    (other / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(BundleError, match="text_search"):
        TextSearch(other, "onnxruntime")
    copy = tmp_path / "copy"
    shutil.copytree(text_bundle["path"], copy)
    (copy / "tokenizer.json").write_text(json.dumps({"tampered": True}))
    with pytest.raises(IntegrityError):
        TextSearch(copy, "onnxruntime")
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(BackendUnavailableError, match=r"edgecart\[text\]"):
        TextSearch(text_bundle["path"], "onnxruntime")


@pytest.mark.parametrize("bad", [{"max_len": 0}, {"padding": "middle"}, {"tokenizer": "../t.json"},
                                 {"kind": "image"}, {"input_ids": "x", "attention_mask": "x"}])
def test_text_preprocessing_validates(bad):
    kw = {"tokenizer": "tokenizer.json", "max_len": 8, **bad}
    with pytest.raises(BundleError):  # ManifestError, or UnsafePathError for the path
        TextPreprocessing(**kw)


def test_cli_search_text_json(text_bundle, capsys):
    from edgecart.cli import main

    assert main(["search-text", "dress too small", "--bundle", str(text_bundle["path"]), "-k", "2", "--route",
                 "--json", "--backend", "onnxruntime"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert len(doc["results"]) == 2 and doc["route"]["department"][0]["label"] in ("Dresses", "Bottoms")


def test_text_timing_splits_tokenizer_from_model(text_bundle):
    from edgecart.benchmarks.text_task import TextModel, markdown, speedup, time_text_models
    from edgecart.runtime import load

    s = load(text_bundle["path"], "onnxruntime", threads=1)
    models = {"a": TextModel(s, text_bundle["tok"]), "b": TextModel(s, text_bundle["tok"])}
    rows = time_text_models(models, ["a long message about a dress " * 5, "short"], rounds=6, warmup=1)
    assert set(rows) == {"a", "b"}
    for r in rows.values():
        assert r["rounds"] == 6 and len(r["samples_ms"]) == 6 and r["threads"] == 1
        assert 0 < r["tokenize_ms_p50"] and 0 < r["encode_ms_p50"] and r["tokens_mean"] > 2
    assert speedup(rows, "a", "b")["speedup_p50"] > 0
    assert "| a |" in markdown(rows)
    with pytest.raises(ValueError):
        time_text_models(models, [], rounds=3)


def test_text_sections_are_required_by_schema_and_parser(text_bundle):
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    from edgecart.runtime import ManifestError

    schema = json.loads(files("edgecart.runtime").joinpath("manifest.schema.json").read_text())
    data = json.loads((text_bundle["path"] / "manifest.json").read_text())
    for bad in ({**data, "catalog": None}, {**data, "preprocessing": None}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
        with pytest.raises(ManifestError):
            Manifest.from_dict(bad)
    routing = {**data["catalog"]["routing"], "department": {**data["catalog"]["routing"]["department"],
                                                            "weights": "catalog/not-listed.npy"}}
    with pytest.raises(ManifestError, match="not-listed"):
        Manifest.from_dict({**data, "catalog": {**data["catalog"], "routing": routing}})
