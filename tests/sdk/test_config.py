"""``edgecart.config.from_dict`` checks every value against its field's type hint (one check for every frozen
configuration dataclass: image search, recommendations, text, compress.toml and its recipe), naming the dotted
field, the type it takes and the value it got."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from edgecart.config import ConfigError, from_dict


@dataclass(frozen=True)
class Inner:
    n: int = 1


@dataclass(frozen=True)
class Sample:
    flag: bool = False
    count: int = 1
    ratio: float = 0.5
    name: str = "x"
    mode: Literal["fast", "slow"] = "fast"
    tags: tuple[str, ...] = ()
    sizes: tuple[int, ...] = ()
    weights: tuple[float, ...] = ()
    pair: tuple[int, int] = (1, 2)
    limit: int | None = None
    path: Path | None = None
    source: str | dict[str, Any] | None = field(default=None, metadata={"expected": "a file name or a table"})
    extra: Any = None
    inner: Inner = field(default_factory=Inner)


def _fails(doc: dict[str, Any], *words: str) -> str:
    with pytest.raises(ConfigError) as err:
        from_dict(Sample, doc)
    msg = str(err.value)
    for w in words:
        assert w in msg, msg
    return msg


# 1. one rule per hint: a value of the wrong type fails naming the field, the expected type and the value ----------

@pytest.mark.parametrize(("doc", "words"), [
    ({"flag": "false"}, ["Sample.flag: expected true or false, got 'false' (str)", "flag = false"]),
    ({"flag": 1}, ["Sample.flag: expected true or false, got 1 (int)"]),
    ({"count": "3"}, ["Sample.count: expected a whole number", "got '3' (str)", "count = 3"]),
    ({"count": True}, ["Sample.count: expected a whole number", "got True (bool)"]),
    ({"count": 2.5}, ["Sample.count: expected a whole number", "got 2.5 (float)"]),
    ({"ratio": True}, ["Sample.ratio: expected a number, got True (bool)"]),
    ({"ratio": "0.5"}, ["Sample.ratio: expected a number, got '0.5' (str)", "ratio = 0.5"]),
    ({"name": 3}, ["Sample.name: expected a string, got 3 (int)"]),
    ({"mode": "medium"}, ["Sample.mode: expected one of 'fast', 'slow', got 'medium' (str)"]),
    ({"mode": 1}, ["Sample.mode: expected one of 'fast', 'slow', got 1 (int)"]),
    ({"tags": "onnx"}, ["Sample.tags: expected a list of strings, got 'onnx' (str)", 'tags = ["onnx"]']),
    ({"tags": 5}, ["Sample.tags: expected a list of strings, got 5 (int)"]),
    ({"tags": {"a": 1}}, ["Sample.tags: expected a list of strings"]),
    ({"tags": ["a", 3]}, ["Sample.tags[1]: expected a string, got 3 (int)"]),
    ({"sizes": [1, "2"]}, ["Sample.sizes[1]: expected a whole number", "got '2' (str)"]),
    ({"weights": [1.0, False]}, ["Sample.weights[1]: expected a number, got False (bool)"]),
    ({"pair": [1, 2, 3]}, ["Sample.pair: expected a list of 2 whole numbers", "got [1, 2, 3] (list)"]),
    ({"pair": "12"}, ["Sample.pair: expected a list of 2 whole numbers"]),
    ({"limit": "2"}, ["Sample.limit: expected a whole number", "got '2' (str)"]),
    ({"path": 3}, ["Sample.path: expected a path", "got 3 (int)"]),
    ({"source": 3}, ["Sample.source: expected a file name or a table, got 3 (int)"]),
    ({"inner": 3}, ["Sample.inner: expected a table of keys (Inner), got 3 (int)"]),
    ({"inner": {"n": "1"}}, ["Sample.inner.n: expected a whole number", "got '1' (str)"]),
])
def test_a_value_of_the_wrong_type_names_field_type_and_value(doc, words):
    _fails(doc, *words)


def test_the_message_reads_as_documented():
    assert str(_fails({"count": "3"})) == ("Sample.count: expected a whole number (an integer), got '3' (str); "
                                          "e.g. count = 3")
    with pytest.raises(ConfigError) as err:
        from_dict(Sample, {"flag": "true"})
    assert type(err.value) is ConfigError  # the CLIs' --json errors show the class name


def test_a_bad_value_inside_a_union_arm_says_what_is_wrong_inside():
    @dataclass(frozen=True)
    class Holder:
        items: tuple[int, ...] | str = ()

    with pytest.raises(ConfigError, match=r"Holder\.items\[1\]: expected a whole number"):
        from_dict(Holder, {"items": [1, "x"]})
    with pytest.raises(ConfigError, match=r"Holder\.items: expected a list of whole numbers or a string, got 3"):
        from_dict(Holder, {"items": 3})
    assert from_dict(Holder, {"items": [1, 2]}).items == (1, 2)


def test_a_long_value_is_shortened_in_the_message():
    msg = _fails({"name": list(range(1000))})
    assert len(msg) < 200 and "..." in msg


# 2. the same rules pass values of the right type (and convert what TOML/JSON cannot say) -----------------------------

def test_values_of_the_right_type_pass():
    s = from_dict(Sample, {"flag": True, "count": 3, "ratio": 0.25, "name": "y", "mode": "slow", "tags": ["a", "b"],
                           "sizes": [1, 2], "weights": [1, 0.5], "pair": [3, 4], "limit": 2, "path": "a/b",
                           "source": {"kind": "image"}, "extra": object, "inner": {"n": 2}})
    assert s == Sample(True, 3, 0.25, "y", "slow", ("a", "b"), (1, 2), (1.0, 0.5), (3, 4), 2, "a/b",
                       {"kind": "image"}, object, Inner(2))
    assert from_dict(Sample, {"flag": False}).flag is False


def test_an_int_where_a_float_is_expected_becomes_a_float():
    s = from_dict(Sample, {"ratio": 1, "weights": [0, 2]})
    assert s.ratio == 1.0 and type(s.ratio) is float
    assert all(type(w) is float for w in s.weights)


def test_none_passes_where_the_hint_allows_it_only():
    s = from_dict(Sample, {"limit": None, "path": None, "source": None, "extra": None})
    assert s.limit is None and s.path is None and s.source is None
    _fails({"count": None}, "Sample.count: expected a whole number", "got None (NoneType)")


def test_a_path_takes_a_string_or_a_path():
    assert from_dict(Sample, {"path": Path("x")}).path == Path("x")
    assert from_dict(Sample, {"path": "x"}).path == "x"


def test_a_union_takes_any_of_its_types():
    assert from_dict(Sample, {"source": "pre.json"}).source == "pre.json"
    assert from_dict(Sample, {"source": {"size": [1, 2]}}).source == {"size": [1, 2]}


def test_tuples_and_nested_tables_round_trip():
    s = from_dict(Sample, {"tags": ("a",), "inner": Inner(5)})
    assert s.tags == ("a",) and s.inner == Inner(5)


def test_any_and_unknown_hints_pass_anything():
    for v in ("x", 3, [1], {"a": 1}, True):
        assert from_dict(Sample, {"extra": v}).extra == v


def test_config_module_imports_without_torch():
    code = "import sys, edgecart.config; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# 3. end to end through each task's real configuration -------------------------------------------------------------

def test_image_search_config_checks_value_types(tmp_path):
    from edgecart.vision.config import BuildConfig, BuildConfigError

    with pytest.raises(BuildConfigError, match=r"config\.teacher\.epochs: expected a whole number.*'3' \(str\)"):
        BuildConfig.from_dict({"teacher": {"epochs": "3"}})
    with pytest.raises(BuildConfigError, match=r"config\.export\.formats: expected a list of strings.*'onnx'"):
        BuildConfig.from_dict({"export": {"formats": "onnx"}})
    with pytest.raises(BuildConfigError, match=r"config\.teacher: expected a table of keys"):
        BuildConfig.from_dict({"teacher": 3})
    p = tmp_path / "build.toml"
    p.write_text('threads = 1\n[teacher]\nlr = 1\nepochs = 2\n[student]\nbaseline = false\n[export]\n'
                 'formats = ["onnx"]\ngate_max_drop = 0\n')
    cfg = BuildConfig.from_toml(p)
    assert cfg.teacher.epochs == 2 and cfg.student.baseline is False and cfg.export.formats == ("onnx",)
    assert type(cfg.teacher.lr) is float and type(cfg.export.gate_max_drop) is float  # int -> float


def test_recommendations_config_checks_value_types(tmp_path):
    from edgecart.recs.build import load_config
    from edgecart.recs.config import RecsConfig

    with pytest.raises(ConfigError, match=r"RecsConfig\.int8: expected true or false, got 'false' \(str\)"):
        RecsConfig.from_dict({"int8": "false"})  # a non-empty string is truthy: it turned int8 ON
    with pytest.raises(ConfigError, match=r"RecsConfig\.teacher_train\.epochs: expected a whole number"):
        RecsConfig.from_dict({"teacher_train": {"epochs": "3"}})
    f = tmp_path / "b.toml"
    f.write_text('formats = "onnx"\n')
    with pytest.raises(ConfigError, match=r"RecsConfig\.formats: expected a list of strings.*formats = \[\"onnx\"\]"):
        load_config(f)
    f.write_text('formats = ["onnx"]\ngate_max_drop = 0\nint8 = false\n[teacher_train]\nepochs = 2\n')
    _, cfg = load_config(f)
    assert cfg.formats == ("onnx",) and cfg.int8 is False and cfg.teacher_train.epochs == 2
    assert type(cfg.gate_max_drop) is float


def test_text_config_checks_value_types():
    from edgecart.text.config import TextConfig

    with pytest.raises(ConfigError, match=r"TextConfig\.int8: expected true or false, got 'false' \(str\)"):
        TextConfig.from_dict({"int8": "false"})
    with pytest.raises(ConfigError, match=r"TextConfig\.student_train\.lr: expected a number, got '0.1' \(str\)"):
        TextConfig.from_dict({"student_train": {"lr": "0.1"}})
    cfg = TextConfig.from_dict({"formats": ["onnx"], "gate_max_drop": 0, "student": {"hidden": 64, "heads": 2}})
    assert cfg.formats == ("onnx",) and cfg.student.hidden == 64 and type(cfg.gate_max_drop) is float


def test_compress_config_checks_value_types(tmp_path, monkeypatch):
    from edgecart.compress import Recipe, cli_support

    p = tmp_path / "compress.toml"
    p.write_text('model = "m.pt2"\nformats = ["onnx"]\noverwrite = "false"\n')
    with pytest.raises(ConfigError, match=r"compress\.toml: overwrite: expected true or false, got 'false' \(str\)"):
        cli_support.compress_from_config(p)
    with pytest.raises(ConfigError, match=r"quantize\.max_drop: expected a number, got 'small' \(str\)"):
        Recipe.from_dict({"quantize": {"max_drop": "small"}})
    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli_support, "export_user_model", lambda spec, **kw: seen.update(kw, spec=spec))
    p.write_text('model = "m.pt2"\nformats = ["onnx"]\noverwrite = true\ninput_names = ["x"]\n'
                 'calibration = "c.npz"\n[quantize]\nrecipes = ["static-int8-per-channel"]\nmax_drop = 0\n')
    cli_support.compress_from_config(p)
    assert seen["spec"] == str(tmp_path / "m.pt2") and seen["overwrite"] is True
    assert list(seen["formats"]) == ["onnx"] and list(seen["input_names"]) == ["x"]
    assert seen["calibration"] == str(tmp_path / "c.npz")
    q = seen["recipe"].quantize
    assert q.max_drop == 0.0 and type(q.max_drop) is float


def test_unknown_hints_and_unions_of_several_tables_pass_their_values_on():
    @dataclass(frozen=True)
    class Odd:
        hook: Callable[[], int] = print
        either: Callable[[], int] | int = 0
        thing: Inner | Sample | None = None

    assert from_dict(Odd, {"hook": None}).hook is None  # an unknown hint takes anything, None too
    assert from_dict(Odd, {"either": len}).either is len
    assert from_dict(Odd, {"thing": "a registered name"}).thing == "a registered name"  # the class tells them apart


def test_distillation_configs_and_loss_terms_check_value_types_too():
    from edgecart.compress.distill import DistillConfig
    from edgecart.compress.losses import loss_from_dict

    with pytest.raises(ConfigError, match=r"epochs: expected a whole number.*'3'"):
        DistillConfig.from_dict({"epochs": "3"})
    with pytest.raises(ConfigError, match=r"temperature: expected a number.*'4'"):
        loss_from_dict({"name": "kl", "temperature": "4"})
    with pytest.raises(ConfigError, match=r"losses\[0\].*temperature"):
        DistillConfig.from_dict({"losses": [{"name": "kl", "temperature": "4"}]})
    cfg = DistillConfig.from_dict({"epochs": 3, "losses": [{"name": "kl", "temperature": 4}]})
    assert cfg.epochs == 3 and cfg.losses[0].temperature == 4.0
