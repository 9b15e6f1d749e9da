"""TextSearch and the tokenizer path on a tiny text bundle built here (a 1-layer student, a dozen texts, the real
MiniLM tokenizer reduced to their word pieces)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from edgecart.runtime import BackendUnavailableError, BundleError, InputSpecError, IntegrityError
from edgecart.runtime.manifest import Manifest, TextPreprocessing

from ..tiny_text import MAX_LEN, TEXTS, student_and_tokenizer, write_tiny_text_bundle

pytest.importorskip("tokenizers")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def text_bundle(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    model, small = student_and_tokenizer()
    return write_tiny_text_bundle(tmp_path_factory.mktemp("text") / "tiny-text", model, small, "tiny-text",
                                  {"note": "test bundle"}, int8=False)


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
    if not text.strip():  # the tokenizer takes it, but there is no message to search for or route
        for call in (s.search, s.route, s.embed):
            with pytest.raises(InputSpecError, match="customer's message"):
                call(text)
        return
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
    with pytest.raises(InputSpecError, match=r"shape \(2, 24\).*one embedding of shape \(24,\)"):
        s.search_embedding(np.zeros((2, 24), np.float32))  # a batch: was "dimension 48 does not match 24"
    with pytest.raises(InputSpecError, match=r"shape \(3,\).*one embedding of shape \(24,\)"):
        s.search_embedding(np.zeros(3, np.float32))
    assert len(s.search_embedding(np.ones((1, 24), np.float32), k=2)) == 2  # (1, D) is one embedding


def test_undecodable_text_is_searched_with_a_replacement_character(text_bundle, capsys):
    from edgecart.cli import main
    from edgecart.runtime.text import TextSearch

    s = TextSearch(text_bundle["path"], "onnxruntime")
    want = [h.id for h in s.search("\ufffd dress too small", k=3)]
    assert [h.id for h in s.search("\ud800 dress too small", k=3)] == want
    assert s.route("\udcff dress too small") == s.route("\ufffd dress too small")
    # the byte 0xff on a command line reaches argv as the lone surrogate U+DCFF
    assert main(["search-text", "\udcff dress too small", "--bundle", str(text_bundle["path"]), "-k", "3",
                 "--json", "--backend", "onnxruntime"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)["results"]] == want


@pytest.mark.parametrize("message", ["", "   ", "\n\t "], ids=["empty", "spaces", "newline-tab"])
def test_cli_search_text_without_a_message_is_an_error(text_bundle, capsys, message):
    from edgecart.cli import main

    assert main(["search-text", message, "--bundle", str(text_bundle["path"]), "--backend", "onnxruntime"]) == 2
    out = capsys.readouterr()
    assert "customer's message" in out.err and out.out == ""


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


@pytest.mark.parametrize("which", ["tokenizer", "items"])
def test_text_files_swapped_after_opening_are_refused(text_bundle, tmp_path, which):
    from edgecart.runtime import TextSearch, open_bundle

    copy = tmp_path / "b"
    shutil.copytree(text_bundle["path"], copy)
    b = open_bundle(copy)
    m = b.manifest
    rel = m.preprocessing.tokenizer if which == "tokenizer" else m.catalog["items_file"]
    doc = json.loads((copy / rel).read_text(encoding="utf-8"))
    doc["edited"] = True
    (copy / rel).write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(IntegrityError):
        TextSearch(b, "onnxruntime")


def test_a_key_is_checked_by_textsearch_and_search_text(text_bundle, tmp_path, capsys):
    from edgecart.cli import main
    from edgecart.runtime import SignatureError, TextSearch, open_bundle

    assert main(["keygen", "--out", str(tmp_path / "k")]) == 0
    pub = tmp_path / "k" / "edgecart-signing.pub"
    with pytest.raises(SignatureError, match="not signed"):
        TextSearch(text_bundle["path"], "onnxruntime", public_key=pub)
    with pytest.raises(SignatureError, match="not signed"):  # also a bundle opened earlier without the key
        TextSearch(open_bundle(text_bundle["path"]), "onnxruntime", public_key=pub)
    capsys.readouterr()
    assert main(["search-text", "the dress is too small", "--bundle", str(text_bundle["path"]), "--public-key",
                 str(pub)]) == 2
    assert "not signed" in capsys.readouterr().err
    signed = tmp_path / "signed"
    shutil.copytree(text_bundle["path"], signed)
    assert main(["sign", str(signed), "--key", str(tmp_path / "k" / "edgecart-signing.key")]) == 0
    assert main(["search-text", "the dress is too small", "--bundle", str(signed), "--public-key",
                 str(pub), "--k", "2", "--backend", "onnxruntime"]) == 0


def test_cli_search_text_says_when_fewer_than_k_come_back(text_bundle, capsys):
    from edgecart.cli import main

    assert main(["search-text", "dress too small", "--bundle", str(text_bundle["path"]), "-k", "100000",
                 "--json", "--backend", "onnxruntime"]) == 0
    out = capsys.readouterr()
    n = len(json.loads(out.out)["results"])
    assert n < 100000 and "--k 100000" in out.err and f"{n} texts" in out.err
