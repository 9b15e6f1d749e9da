"""What ``edgecart export`` and ``edgecart compress`` print on stdout for the bundle they wrote (one helper)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")


@pytest.fixture()
def summary(tiny_bundle):
    from edgecart.compress.cli_support import summarize
    from edgecart.runtime import open_bundle

    return summarize(tiny_bundle, open_bundle(tiny_bundle).manifest)


def test_text_summary_has_one_line_per_artifact_then_the_bundle(summary, capsys):
    from edgecart.cli import compress_cmd, export_cmd
    from edgecart.cli._summary import print_bundle_summary

    arts = summary["artifacts"]
    assert len(arts) == 6 and {a["precision"] for a in arts} == {"fp32", "int8"}
    for cmd, tail in ((export_cmd, lambda a: f"parity cos {a['parity_cosine']}"),
                      (compress_cmd, lambda a: a["recipe"] or "")):
        print_bundle_summary(summary, False, cmd.note)
        lines = capsys.readouterr().out.splitlines()
        assert lines[-1] == f"bundle: {summary['bundle']}" and len(lines) == len(arts) + 1
        for line, a in zip(lines[:-1], arts, strict=True):
            assert line.split()[:3] == [a["name"], a["precision"], f"{a['bytes']:,d}"]
            assert line.rstrip().endswith(f"B  {tail(a)}".rstrip())
    assert all(a["parity_cosine"] is not None for a in arts)  # the export note shows a number, not None


def test_json_summary_is_the_whole_summary_and_nothing_else(summary, capsys):
    from edgecart.cli import export_cmd
    from edgecart.cli._summary import print_bundle_summary

    print_bundle_summary(summary, True, export_cmd.note)
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(summary))
