"""``edgecart build text`` on the user's own CSV: reading the file, checking the arguments and the data before any
work. No training here (every check runs before the teacher loads); the end-to-end build is in test_text.py."""

from __future__ import annotations

import csv
import os

import pytest

TOPICS = ("delivery", "refund", "payment")


def _csv(path, rows, header=("text", "topic"), encoding="utf-8"):
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _rows(n=30, topics=TOPICS):
    return [(f"message number {i} about {topics[i % len(topics)]}", topics[i % len(topics)]) for i in range(n)]


def _build(tmp_path, *extra, csv_path=None, out=None):
    from edgecart.cli import main

    csv_path = csv_path or _csv(tmp_path / "msgs.csv", _rows())
    return main(["build", "text", "--csv", str(csv_path), "--label-column", "topic",
                 "--out", str(out or tmp_path / "out"), *extra])


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    """Every test here must stop before the pipeline: reaching it is a failure, not a 20 s build."""
    import sys
    import types

    fake = types.ModuleType("edgecart.text.pipeline")

    def boom(*_a, **_k):
        raise AssertionError("the build reached the pipeline")

    fake.run = fake.write_summary = boom
    monkeypatch.setitem(sys.modules, "edgecart.text.pipeline", fake)
    import edgecart.text as pkg

    monkeypatch.setattr(pkg, "pipeline", fake, raising=False)


# --- 1: ids stay tied to the CSV's data rows; dropped rows are reported ------------------------------------------

def test_ids_name_the_csv_data_row_and_dropped_rows_are_reported(tmp_path):
    from edgecart.text.build import read_messages

    rows = _rows(30)
    rows[1] = ("", "refund")
    rows[4] = ("   ", "delivery")
    rows[7] = ("no label here", "")
    got = read_messages(_csv(tmp_path / "m.csv", rows), "text", "topic", None)
    assert len(got.data) == 27
    assert got.dropped == (2, 5, 8)
    ids = dict(zip(got.data.ids, got.data.texts, strict=True))
    assert ids["row-4"] == rows[3][0] and ids["row-30"] == rows[29][0]
    assert "row-2" not in ids
    assert "3 rows" in got.note() and "2, 5, 8" in got.note()


# --- 2: encodings -------------------------------------------------------------------------------------------------

def test_a_utf8_csv_with_a_bom_reads(tmp_path):
    from edgecart.text.build import read_csv

    data = read_csv(_csv(tmp_path / "bom.csv", _rows(), encoding="utf-8-sig"), "text", "topic", None)
    assert len(data) == 30


def test_a_latin1_csv_is_a_typed_error_with_the_iconv_fix(tmp_path):
    from edgecart.runtime.errors import EdgecartError
    from edgecart.text.build import TextDataError, read_csv

    p = _csv(tmp_path / "l1.csv", [(f"café {t}", lab) for t, lab in _rows()], encoding="latin-1")
    with pytest.raises(TextDataError, match="iconv -f latin1 -t utf-8") as e:
        read_csv(p, "text", "topic", None)
    assert isinstance(e.value, EdgecartError) and str(p) in str(e.value)


# --- 3: typed errors -----------------------------------------------------------------------------------------------

def test_a_missing_column_is_a_typed_error_naming_the_flag(tmp_path, capsys):
    from edgecart.cli import main
    from edgecart.text.build import TextDataError, read_csv

    p = _csv(tmp_path / "m.csv", _rows())
    with pytest.raises(TextDataError, match="--text-column"):
        read_csv(p, "topic2", "topic", None)
    assert main(["build", "text", "--csv", str(p), "--label-column", "nope", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--label-column" in err and "'nope'" in err and "Traceback" not in err


def test_too_few_usable_rows_is_a_typed_error(tmp_path):
    from edgecart.text.build import TextDataError, read_csv

    with pytest.raises(TextDataError, match="at least 20"):
        read_csv(_csv(tmp_path / "e.csv", [(" ", "a")] * 40), "text", "topic", None)


def test_bad_formats_and_config_are_typed_errors(tmp_path, capsys):
    assert _build(tmp_path, "--formats", "bogus") == 2
    assert "--formats" in capsys.readouterr().err
    assert _build(tmp_path, "--config", str(tmp_path / "missing.json")) == 2
    assert "--config" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{bad json")
    assert _build(tmp_path, "--config", str(tmp_path / "broken.json")) == 2
    assert "JSON" in capsys.readouterr().err
    assert _build(tmp_path, "--valid", "0.9") == 2


def test_a_very_long_text_reads(tmp_path):
    from edgecart.text.build import read_csv

    rows = _rows()
    rows[0] = ("x" * 200_000, rows[0][1])
    data = read_csv(_csv(tmp_path / "long.csv", rows), "text", "topic", None)
    assert len(data.texts[0]) == 200_000


# --- 4 and 5: --out and --name are checked before any work ---------------------------------------------------------

def test_out_that_is_a_file_is_refused_before_reading(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert _build(tmp_path, out=tmp_path / "afile", csv_path=tmp_path / "not-read.csv") == 2
    assert "--out" in capsys.readouterr().err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_out_that_cannot_be_written_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert _build(tmp_path, out=ro / "out") == 2
    finally:
        ro.chmod(0o700)
    assert "--out" in capsys.readouterr().err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_out_on_a_read_only_filesystem_is_refused(tmp_path, capsys):
    assert _build(tmp_path, out="/proc/self/edgecart-out") == 2  # /proc refuses new folders, even to root
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write" in err


@pytest.mark.parametrize("name", ["a/b", "../../x", "..", ".", "", "cache"])
def test_bad_names_are_refused_up_front(tmp_path, capsys, name):
    assert _build(tmp_path, "--name", name) == 2
    assert "--name" in capsys.readouterr().err
    assert not (tmp_path / "out" / "a").exists()


# --- 6 and 7: degenerate data --------------------------------------------------------------------------------------

def test_a_single_label_is_refused(tmp_path, capsys):
    from edgecart.text.build import TextDataError, check_data, read_csv

    data = read_csv(_csv(tmp_path / "one.csv", _rows(topics=("only",))), "text", "topic", None)
    with pytest.raises(TextDataError, match="at least two"):
        check_data(data, "text", "topic")


def test_numeric_texts_are_warned_about(tmp_path):
    from edgecart.text.build import check_data, read_csv

    data = read_csv(_csv(tmp_path / "num.csv", [(str(i), TOPICS[i % 3]) for i in range(30)]), "text", "topic", None)
    notes = check_data(data, "text", "topic")
    assert any("number" in n and "--text-column" in n for n in notes)
    assert check_data(read_csv(_csv(tmp_path / "ok.csv", _rows()), "text", "topic", None), "text", "topic") == []


def test_labels_without_a_training_example_and_held_out_messages_are_reported(tmp_path):
    import numpy as np
    from edgecart.data.reviews import TextSplit
    from edgecart.text.build import read_csv, split_notes

    rows = _rows(30) + [(f"a rare message {i}", f"rare{i}") for i in range(2)]
    data = read_csv(_csv(tmp_path / "rare.csv", rows), "text", "topic", None)
    split = TextSplit(data.take(np.arange(0, 24)), data.take(np.arange(24, 28)), data.take(np.arange(28, 32)))
    notes = split_notes(split)
    assert any("8 held-out" in n and "not in the catalog" in n for n in notes)
    assert any("no training example" in n and "rare0" in n and "rare1" in n and "refund" not in n for n in notes)
    ok = TextSplit(data.take(np.r_[0:28, 30:32]), data.take(np.arange(28, 29)), data.take(np.arange(29, 30)))
    assert not any("no training example" in n for n in split_notes(ok))
