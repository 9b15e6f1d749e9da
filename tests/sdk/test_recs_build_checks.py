"""``edgecart build recommendations`` refuses a bad ``--out``, config or flag up front (before the log is read or
anything trains) with a typed error that says the fix; ``edgecart recommend``'s usage errors and ``--history-file``.
Nothing here trains a model."""

from __future__ import annotations

import errno
import json

import pytest
from edgecart.cli import main

TOML = """
formats = ["onnx"]
teacher_seeds = 1
[data]
min_item_count = 1
[teacher]
dim = 16
[student]
dim = 4
"""


def _log(path, users: int = 12, length: int = 6):
    rows = [f"u{u},sku-{(u + t) % 8 + 1},{t}" for u in range(users) for t in range(length)]
    path.write_text("user,item,ts\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """(argv without --out, tmp_path); building or (with ``read=False``) reading the log fails the test."""
    def trained(*_a, **_k):
        raise AssertionError("the build started")

    monkeypatch.setattr("edgecart.recs.build.build", trained)
    (tmp_path / "build.toml").write_text(TOML)
    argv = ["build", "recommendations", "--interactions", str(_log(tmp_path / "log.csv")), "--user-col", "user",
            "--item-col", "item", "--time-col", "ts", "--config", str(tmp_path / "build.toml")]
    return argv, tmp_path


def _no_log_read(monkeypatch):
    def read(*_a, **_k):
        raise AssertionError("the log was read before --out was checked")

    monkeypatch.setattr("edgecart.data.interactions.load_interactions", read)


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_an_out_that_is_a_file_is_refused_before_the_log_is_read(setup, monkeypatch, capsys):
    argv, tmp = setup
    _no_log_read(monkeypatch)
    f = tmp / "taken.csv"
    f.write_text("x")
    assert main([*argv, "--out", str(f)]) == 2
    assert "is a file, not a folder" in _err(capsys)
    assert main([*argv, "--out", str(f / "sub")]) == 2  # below a file: the folder cannot be made
    assert "is a file, not a folder" in _err(capsys)
    assert f.read_text() == "x"


def test_an_out_that_cannot_be_written_is_refused_before_the_log_is_read(setup, monkeypatch, capsys):
    import tempfile

    argv, tmp = setup
    _no_log_read(monkeypatch)

    def read_only(*_a, **_k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main([*argv, "--out", str(tmp / "out")]) == 2
    err = _err(capsys)
    assert "cannot write into" in err and "Read-only file system" in err and "another --out" in err
    assert not (tmp / "out").exists()  # the folder made for the probe is removed again


def test_a_cache_that_cannot_be_written_is_refused_too(setup, monkeypatch, capsys):
    argv, tmp = setup
    _no_log_read(monkeypatch)
    (tmp / "file").write_text("x")
    assert main([*argv, "--out", str(tmp / "out"), "--cache", str(tmp / "file" / "cache")]) == 2
    assert "--cache" in _err(capsys)
    assert not (tmp / "out").exists()


def test_a_non_bundle_bundle_folder_is_refused_before_the_log_is_read(setup, monkeypatch, capsys):
    argv, tmp = setup
    _no_log_read(monkeypatch)
    (tmp / "out" / "bundle").mkdir(parents=True)
    (tmp / "out" / "bundle" / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(tmp / "out")]) == 2
    err = _err(capsys)
    assert "not an edgecart bundle" in err and "another --out" in err
    assert (tmp / "out" / "bundle" / "notes.txt").read_text() == "mine"
    (tmp / "out2").mkdir()
    (tmp / "out2" / "bundle").write_text("a file")
    assert main([*argv, "--out", str(tmp / "out2")]) == 2
    assert "not an edgecart bundle" in _err(capsys)


def test_a_write_error_during_the_build_is_typed(setup, monkeypatch, capsys):
    argv, tmp = setup

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "out" / "cache" / "x.pt"))

    monkeypatch.setattr("edgecart.recs.build.build", full)
    assert main([*argv, "--out", str(tmp / "out"), "--threads", "1"]) == 2
    err = _err(capsys)
    assert "No space left on device" in err and "x.pt" in err and "--out" in err


@pytest.mark.parametrize("threads", ["0", "-3", "two"])
def test_threads_below_one_is_a_usage_error(setup, capsys, threads):
    argv, tmp = setup
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp / "out"), "--threads", threads])
    assert exc.value.code == 2 and "--threads" in _err(capsys)
    assert not (tmp / "out").exists()


def test_a_student_as_wide_as_the_teacher_is_a_config_error_before_anything_trains(setup, capsys):
    argv, tmp = setup
    (tmp / "build.toml").write_text(TOML.replace("dim = 4", "dim = 16"))
    assert main([*argv, "--out", str(tmp / "out")]) == 2
    err = _err(capsys)
    assert "max_student_ratio" in err and "[student] dim" in err
    assert not (tmp / "out").exists()


def test_the_pipeline_checks_the_student_size_before_the_teacher_trains(monkeypatch):
    import dataclasses

    from edgecart.config import ConfigError
    from edgecart.recs.config import FAST, ModelSize
    from edgecart.recs.pipeline import run_dataset

    from ..tiny_recs import cycle_data

    def trained(*_a, **_k):
        raise AssertionError("the teacher trained")

    monkeypatch.setattr("edgecart.recs.pipeline.train_teacher", trained)
    data, _, _ = cycle_data()
    wide = dataclasses.replace(FAST, student=ModelSize(16, 1, 2, 0.0), teacher_dims=(8, 16))
    with pytest.raises(ConfigError, match=r"8-d.*16-d.*max_student_ratio 0.25.*\[student\] dim"):
        run_dataset(data, wide, None, None, None)


def test_config_errors_are_typed(tmp_path):
    from edgecart.config import ConfigError
    from edgecart.recs.build import load_config

    f = tmp_path / "b.toml"
    for text, match in (("threads = 0\n", "threads must be >= 1"), ("teacher_seeds = [\n", "not valid TOML"),
                        ("[data]\nmin_item_count = 0\n", "min_item_count must be >= 1")):
        f.write_text(text)
        with pytest.raises(ConfigError, match=match):
            load_config(f)
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_min_item_count_is_honoured_at_the_top_level_or_under_data(tmp_path):
    from edgecart.config import ConfigError
    from edgecart.recs.build import load_config

    f = tmp_path / "b.toml"
    assert load_config(None)[0]["min_item_count"] == load_config(None)[1].min_item_count == 5
    for text in ("min_item_count = 1\n", "[data]\nmin_item_count = 1\n",
                 "min_item_count = 1\n[data]\nmin_item_count = 1\n"):
        f.write_text(text)
        settings, cfg = load_config(f)
        assert settings["min_item_count"] == cfg.min_item_count == 1  # the manifest's config says what was used
    f.write_text("min_item_count = 2\n[data]\nmin_item_count = 1\n")
    with pytest.raises(ConfigError, match=r"\[data\] min_item_count"):
        load_config(f)


def test_a_log_too_thin_for_min_item_count_says_where_to_lower_it(setup, capsys):
    argv, tmp = setup
    (tmp / "build.toml").write_text(TOML.replace("min_item_count = 1", "min_item_count = 50"))
    assert main([*argv, "--out", str(tmp / "out")]) == 2
    assert "[data] min_item_count" in _err(capsys)
    assert not (tmp / "out").exists()


class _FakeRecommender:
    seen: list = []

    def __init__(self, *_a, **_k) -> None:
        from types import SimpleNamespace

        self.session = SimpleNamespace(backend=SimpleNamespace(name="fake"))

    def recommend(self, history, k=10, exclude_seen=None):
        from edgecart.runtime.recommender import Recommendation

        _FakeRecommender.seen.append(list(history))
        unknown = tuple(h for h in history if h.startswith("nope"))
        return Recommendation(("sku-1",), (1.0,), "popularity", unknown, 0, None)


@pytest.fixture
def fake_rec(monkeypatch):
    _FakeRecommender.seen = []
    monkeypatch.setattr("edgecart.runtime.recommender.Recommender", _FakeRecommender)
    return _FakeRecommender.seen


def test_recommend_reads_ids_with_commas_from_a_history_file(fake_rec, tmp_path, capsys):
    f = tmp_path / "history.txt"
    f.write_text("sku,5\n  sku-2 \n\nsku-3\r\n")
    assert main(["recommend", "--bundle", "b", "--history-file", str(f), "--json"]) == 0
    assert fake_rec == [["sku,5", "sku-2", "sku-3"]]
    assert json.loads(capsys.readouterr().out)["items"] == ["sku-1"]
    assert main(["recommend", "--bundle", "b", "--history", "sku-2,sku-3"]) == 0
    assert fake_rec[-1] == ["sku-2", "sku-3"]


def test_recommend_notes_history_file_for_unknown_ids(fake_rec, capsys):
    assert main(["recommend", "--bundle", "b", "--history", "nope,1,sku-2"]) == 0
    out = capsys.readouterr()
    assert "ignored unknown ids: nope" in out.out and "--history-file" in out.err


def test_recommend_history_errors_name_history_file(fake_rec, tmp_path, capsys):
    assert main(["recommend", "--bundle", "b", "--history-file", str(tmp_path / "none.txt")]) == 2
    assert "--history-file" in _err(capsys)
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--bundle", "b"])
    assert exc.value.code == 2 and "--history-file" in _err(capsys)
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--bundle", "b", "--history", "a", "--history-file", "f"])
    assert exc.value.code == 2
    assert fake_rec == []


@pytest.mark.parametrize("k", ["0", "-1", "x"])
def test_recommend_k_below_one_is_a_usage_error(fake_rec, capsys, k):
    with pytest.raises(SystemExit) as exc:
        main(["recommend", "--bundle", "b", "--history", "", "--k", k])
    assert exc.value.code == 2 and "--k" in _err(capsys)
    assert fake_rec == []


def test_a_bundle_folder_with_the_users_own_files_is_refused_before_the_log_is_read(setup, monkeypatch, capsys):
    from edgecart.exporters.bundle import BundleWriter
    from edgecart.runtime import TensorSpec

    argv, tmp = setup
    _no_log_read(monkeypatch)
    with BundleWriter(tmp / "out" / "bundle", name="r", version="1", task="generic",
                      inputs=(TensorSpec("x", "float32", (1, 4)),), outputs=(TensorSpec("y", "float32", (1, 2)),)) as w:
        w.add_file("a.bin", "metadata", b"x")
        w.commit()
    (tmp / "out" / "bundle" / "notes.txt").write_text("mine")
    assert main([*argv, "--out", str(tmp / "out")]) == 2
    err = _err(capsys)
    assert "notes.txt" in err and "does not list" in err
    assert (tmp / "out" / "bundle" / "notes.txt").read_text() == "mine"


def test_recommend_says_when_fewer_items_than_k_come_back(fake_rec, capsys):
    assert main(["recommend", "--bundle", "b", "--history", "sku-2", "--k", "5"]) == 0
    err = capsys.readouterr().err
    assert "--k 5" in err and "1 item" in err
    assert main(["recommend", "--bundle", "b", "--history", "sku-2", "--k", "1"]) == 0
    assert "--k" not in capsys.readouterr().err
