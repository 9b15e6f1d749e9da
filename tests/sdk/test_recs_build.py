"""``edgecart build recommendations`` from small generated logs (CSV and Parquet): every error case of the log and
item file, then one tiny build (ONNX only) with item metadata, its report, the bundle through the runtime, and an
item-table update without re-export."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

NUM_ITEMS = 12


def _log_rows(users: int = 40, length: int = 14, seed: int = 0):
    """Each user walks the item cycle sku-1 → sku-2 → … from a random start; timestamps as ISO date-times."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(users):
        start = int(rng.integers(0, NUM_ITEMS))
        for t in range(length):
            rows.append((f"u{u}", f"sku-{(start + t) % NUM_ITEMS + 1}", f"2024-05-{1 + t:02d}T10:00:00", t))
    order = rng.permutation(len(rows))  # shuffled: the loader must sort by time
    return [rows[i] for i in order]


def _write_csv(path, rows, header=("user", "item", "ts", "pos")):
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))
    return path


def test_csv_and_parquet_logs_give_the_same_sequences(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from edgecart.data.interactions import load_interactions

    rows = _log_rows()
    csv = _write_csv(tmp_path / "log.csv", rows)
    cols = list(zip(*rows, strict=True))
    pq.write_table(pa.table({"user": cols[0], "item": cols[1], "ts": pa.array(cols[2]).cast(pa.timestamp("s")),
                             "pos": cols[3]}), tmp_path / "log.parquet")
    a, info = load_interactions(csv, user_col="user", item_col="item", time_col="ts")
    b, _ = load_interactions(tmp_path / "log.parquet", user_col="user", item_col="item", time_col="ts")
    assert a.num_items == NUM_ITEMS and len(a.sequences) == 40 and info.kept_rows == 40 * 14
    assert a.item_ids.tolist() == b.item_ids.tolist() and a.user_ids.tolist() == b.user_ids.tolist()
    for x, y in zip(a.sequences, b.sequences, strict=True):
        assert x.tolist() == y.tolist()
    # time order recovered from the shuffled file: each step goes to the next item of the cycle
    ids = a.item_ids
    for s in a.sequences:
        nums = [int(str(ids[i - 1]).split("-")[1]) for i in s]
        assert all(n2 == n1 % NUM_ITEMS + 1 for n1, n2 in zip(nums, nums[1:], strict=False))
    c, _ = load_interactions(csv, user_col="user", item_col="item", order_cols=["pos"])
    assert [s.tolist() for s in c.sequences] == [s.tolist() for s in a.sequences]


@pytest.mark.parametrize("case, match", [
    ("missing_file", "no such file"),
    ("bad_suffix", "unknown file type"),
    ("missing_column", "has no column 'item'"),
    ("empty", "is empty"),
    ("null_ids", "'user' has empty ids"),
    ("bad_time", "neither numbers nor date-times"),
    ("too_short", "no user has 3 or more"),
])
def test_log_errors_are_typed_and_say_the_fix(tmp_path, case, match):
    from edgecart.data.interactions import InteractionLogError, load_interactions
    from edgecart.runtime.errors import EdgecartError

    p = tmp_path / "log.csv"
    if case == "missing_file":
        p = tmp_path / "nope.csv"
    elif case == "bad_suffix":
        p = tmp_path / "log.xlsx"
        p.write_text("x")
    elif case == "missing_column":
        _write_csv(p, _log_rows(), header=("user", "product", "ts", "pos"))
    elif case == "empty":
        p.write_text("user,item,ts,pos\n")
    elif case == "null_ids":
        p.write_text("user,item,ts,pos\n,sku-1,2024-01-01T00:00:00,1\nu1,sku-2,2024-01-02T00:00:00,2\n")
    elif case == "bad_time":
        p.write_text("user,item,ts,pos\nu1,sku-1,yesterday,1\nu1,sku-2,today,2\n")
    elif case == "too_short":
        p.write_text("user,item,ts,pos\nu1,sku-1,1,1\nu1,sku-2,2,2\nu2,sku-1,1,1\n")
    with pytest.raises(InteractionLogError, match=match) as err:
        load_interactions(p, user_col="user", item_col="item", time_col="ts", min_item_count=1)
    assert isinstance(err.value, EdgecartError)


def test_item_file_errors(tmp_path):
    from edgecart.data.interactions import InteractionLogError, load_interactions, load_item_metadata

    data, _ = load_interactions(_write_csv(tmp_path / "log.csv", _log_rows()), user_col="user", item_col="item",
                                time_col="ts")
    dup = tmp_path / "dup.csv"
    dup.write_text("item,name\n" + "".join(f"sku-{i},n{i}\n" for i in range(1, NUM_ITEMS + 1)) + "sku-3,again\n")
    with pytest.raises(InteractionLogError, match="more than once"):
        load_item_metadata(dup, data.item_ids, id_col="item")
    short = tmp_path / "short.csv"
    short.write_text("item,name\n" + "".join(f"sku-{i},n{i}\n" for i in range(1, NUM_ITEMS)))
    with pytest.raises(InteractionLogError, match="lacks 1 of the log's 12 items"):
        load_item_metadata(short, data.item_ids, id_col="item")
    with pytest.raises(InteractionLogError, match="has no column 'sku'"):
        load_item_metadata(short, data.item_ids, id_col="sku")
    ok = tmp_path / "items.csv"
    ok.write_text("item,name,price\n" + "".join(f"sku-{i},Item {i},{i}.5\n" for i in range(1, NUM_ITEMS + 3)))
    records, extra = load_item_metadata(ok, data.item_ids, id_col="item")
    assert extra == 2 and records[0] == {"name": f"Item {data.item_ids[0].split('-')[1]}",
                                         "price": float(data.item_ids[0].split('-')[1]) + 0.5}


def _parser():
    from edgecart.cli import build_cmd

    parser = argparse.ArgumentParser()
    build_cmd.add_parser(parser.add_subparsers())
    return parser


def test_cli_reports_log_errors(tmp_path, capsys):
    p = tmp_path / "log.csv"
    _write_csv(p, _log_rows(), header=("user", "product", "ts", "pos"))
    args = _parser().parse_args(["build", "recommendations", "--interactions", str(p), "--user-col", "user",
                                 "--item-col", "item", "--out", str(tmp_path / "out")])
    assert args.func(args) == 2
    assert "has no column 'item'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_config_rejects_unknown_keys(tmp_path):
    from edgecart.config import ConfigError
    from edgecart.recs.build import load_config

    bad = tmp_path / "b.toml"
    bad.write_text("[data]\nuser = 'x'\n")
    with pytest.raises(ConfigError, match="unknown \\[data\\] keys"):
        load_config(bad)
    bad.write_text("[teacher]\nwidth = 3\n")
    with pytest.raises(ConfigError, match=r"teacher: unknown option\(s\) \['width'\]; known: \['dim'"):
        load_config(bad)


def test_a_teacher_width_in_the_config_replaces_the_default_choice_of_widths(tmp_path):
    from edgecart.recs.build import load_config

    assert load_config(None)[1].teacher_dims == (32, 60)  # the recipe: chosen on validation
    f = tmp_path / "b.toml"
    f.write_text("[teacher]\ndim = 16\n")
    cfg = load_config(f)[1]
    assert cfg.teacher.dim == 16 and cfg.teacher_dims == ()
    f.write_text("teacher_dims = [16, 24]\n[teacher]\ndim = 16\n")
    assert load_config(f)[1].teacher_dims == (16, 24)
    f.write_text("[teacher]\ndropout = 0.3\n")
    assert load_config(f)[1].teacher_dims == (32, 60)


TINY = """
max_len = 8
formats = ["onnx"]
int8 = false
gate_users = 20
golden_samples = 2
calibration_samples = 4
[data]
min_item_count = 1
[teacher]
dim = 16
layers = 1
heads = 1
dropout = 0.0
[student]
dim = 4
layers = 1
heads = 1
dropout = 0.0
[teacher_train]
epochs = 12
lr = 0.01
batch_size = 32
[student_train]
epochs = 12
lr = 0.01
batch_size = 32
[distill]
top_k = 5
hint = 0.5
pca_init = true
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("build")
    log = _write_csv(tmp / "log.csv", _log_rows())
    items = tmp / "items.csv"
    items.write_text("item,name\n" + "".join(f"sku-{i},Item {i}\n" for i in range(1, NUM_ITEMS + 1)))
    (tmp / "build.toml").write_text(TINY)
    out = tmp / "out"
    args = _parser().parse_args(["build", "recommendations", "--interactions", str(log), "--user-col", "user",
                                 "--item-col", "item", "--time-col", "ts", "--items", str(items), "--config",
                                 str(tmp / "build.toml"), "--out", str(out), "--threads", "1"])
    assert args.func(args) == 0
    return out


def test_build_writes_bundle_and_report(built):
    from edgecart.runtime import open_bundle

    for f in ("summary.md", "summary.json", "summary.png"):
        assert (built / f).is_file() and (built / f).stat().st_size > 0
    doc = json.loads((built / "summary.json").read_text())
    models = {m["model"]: m for m in doc["results"][0]["models"]}
    assert doc["results"][0]["teacher_dim"] == 16 and doc["results"][0]["teacher_widths"] == {}  # build.toml's width
    base = {"popularity", "co-occurrence", "teacher (SASRec)", "student, distilled", "student, no distillation",
            "teacher + item-to-item", "buy again"}
    assert set(models) - base <= {"shipped: student + item-to-item", "shipped: + buy again"} and base <= set(models)
    assert (doc["results"][0]["blend"] is None) == ("shipped: student + item-to-item" not in models)
    assert (doc["results"][0]["buy_again"] is None) == ("shipped: + buy again" not in models)
    catalog = open_bundle(built / "bundle").manifest.catalog
    assert (doc["results"][0]["buy_again"] is None) == ("buy_again" not in catalog)
    assert models["student, distilled"]["ndcg_unseen"] is not None
    assert "log " in doc["notes"][0]
    m = open_bundle(built / "bundle").manifest
    assert m.catalog["scoring"] == "user_vector" and m.outputs[0].shape == (1, 4)
    meta = json.loads((built / "bundle" / m.catalog["metadata"]).read_text())
    assert meta["records"][meta["ids"].index("sku-5")] == {"name": "Item 5"}
    art = doc["results"][0]["artifacts"][0]
    assert art["p50_ms"] > 0 and art["ndcg_unseen"] is not None


def test_built_bundle_recommends_the_cycle(built):
    from edgecart.runtime.recommender import Recommender

    rec = Recommender(built / "bundle", backend="onnxruntime")
    out = rec.recommend(["sku-3", "sku-4", "sku-5"], k=3)
    assert out.source == "model" and out.items[0] == "sku-6"
    assert not {"sku-3", "sku-4", "sku-5"} & set(out.items)
    with_seen = rec.recommend(["sku-3", "sku-4", "sku-5"], k=NUM_ITEMS, exclude_seen=False)
    assert len(with_seen) == NUM_ITEMS


def test_item_table_updates_without_re_export(built, tmp_path):
    from edgecart.recs.catalog import update_item_table
    from edgecart.runtime import open_bundle
    from edgecart.runtime.errors import InputSpecError
    from edgecart.runtime.recommender import Recommender

    src = open_bundle(built / "bundle")
    rec = Recommender(src, backend="onnxruntime")
    user = rec.session.run(rec._model_input([rec.index_of(i) for i in ("sku-3", "sku-4", "sku-5")]))["user_vector"][0]
    # a new item whose vector is the user's own scores highest; the old favourite is removed
    new = update_item_table(built / "bundle", tmp_path / "v2", add={"sku-new": user * 10}, remove=["sku-6"],
                            metadata={"sku-7": {"name": "Item 7, renamed"}})
    b2 = open_bundle(new)
    assert b2.manifest.version != src.manifest.version
    for a in src.manifest.artifacts:  # the model files are byte-identical
        assert b2.manifest.file(a.path).sha256 == src.manifest.file(a.path).sha256
    rec2 = Recommender(b2, backend="onnxruntime")
    out = rec2.recommend(["sku-3", "sku-4", "sku-5"], k=3)
    assert out.items[0] == "sku-new" and "sku-6" not in out.items
    assert "sku-6" not in rec2.recommend([], k=NUM_ITEMS + 1).items
    # the model reads histories as table rows: a new item is understood as history at once
    after_new = rec2.recommend(["sku-new"], k=2)
    assert after_new.source == "model" and after_new.used == 1
    meta = json.loads((new / b2.manifest.catalog["metadata"]).read_text())
    assert meta["records"][meta["ids"].index("sku-7")] == {"name": "Item 7, renamed"}
    with pytest.raises(InputSpecError, match="not in the bundle's item table"):
        update_item_table(built / "bundle", tmp_path / "v3", remove=["sku-999"])
    with pytest.raises(InputSpecError, match="already in the table"):
        update_item_table(built / "bundle", tmp_path / "v3", add={"sku-1": user})
    with pytest.raises(InputSpecError, match="finite numbers"):
        update_item_table(built / "bundle", tmp_path / "v3", add={"sku-x": user[:2]})


def _catalog(argv):
    from edgecart.cli import catalog_cmd

    parser = argparse.ArgumentParser()
    catalog_cmd.add_parser(parser.add_subparsers())
    args = parser.parse_args(["catalog", *map(str, argv)])
    return args.func(args)


def _meta(path):
    from edgecart.runtime import open_bundle

    b = open_bundle(path)
    doc = json.loads((path / b.manifest.catalog["metadata"]).read_text())
    return b, dict(zip(doc["ids"], doc["records"], strict=True))


def test_catalog_cli_updates_item_metadata_models_untouched(built, tmp_path, capsys):
    from edgecart.runtime import open_bundle

    src = open_bundle(built / "bundle")
    f = tmp_path / "names.csv"
    f.write_text("item,name,price\nsku-2,Item two (new name),2.5\nsku-9,,9\n")
    from edgecart.recs.catalog import update_items
    from edgecart.runtime import OutputPathError

    with pytest.raises(OutputPathError, match="inside the bundle"):  # would write into the bundle it reads
        update_items(built / "bundle", "update", items=f, out=built / "bundle" / "v2")
    assert not (built / "bundle" / "v2").exists()
    assert _catalog(["update", built / "bundle", "--items", f, "--out", tmp_path / "v2"]) == 0
    assert "update: 2 item(s)" in capsys.readouterr().out
    b2, meta = _meta(tmp_path / "v2")
    from edgecart.recs.catalog import _bump

    assert b2.manifest.version == _bump(src.manifest.version) != src.manifest.version
    for a in src.manifest.artifacts:
        assert b2.manifest.file(a.path).sha256 == src.manifest.file(a.path).sha256
    assert meta["sku-2"] == {"name": "Item two (new name)", "price": 2.5}
    assert meta["sku-9"] == {"name": None, "price": 9}  # an empty cell clears its field
    assert meta["sku-3"] == {"name": "Item 3"}  # items not in the file keep their records
    # the same file again onto the new version, in place (no --out): replaced atomically, version bumped again
    assert _catalog(["update", tmp_path / "v2", "--items", f]) == 0
    assert open_bundle(tmp_path / "v2").manifest.version == _bump(_bump(src.manifest.version))


def test_catalog_cli_adds_items_like_known_ones_and_removes(built, tmp_path):
    from edgecart.runtime.recommender import Recommender

    f = tmp_path / "new.csv"
    f.write_text("item,like,name\nsku-6-large,sku-6,Item 6 (large)\n")
    assert _catalog(["add", built / "bundle", "--items", f, "--out", tmp_path / "v2"]) == 0
    b2, meta = _meta(tmp_path / "v2")
    assert meta["sku-6-large"] == {"name": "Item 6 (large)"} and b2.manifest.catalog["num_items"] == NUM_ITEMS + 1
    rec = Recommender(b2, backend="onnxruntime")
    # it starts from sku-6's embedding: recommended right beside it after the history that leads to sku-6
    assert set(rec.recommend(["sku-3", "sku-4", "sku-5"], k=2).items) == {"sku-6", "sku-6-large"}
    assert _catalog(["remove", tmp_path / "v2", "--ids", "sku-6", "--out", tmp_path / "v3"]) == 0
    rec3 = Recommender(tmp_path / "v3", backend="onnxruntime")
    top = rec3.recommend(["sku-3", "sku-4", "sku-5"], k=2).items
    assert top[0] == "sku-6-large" and "sku-6" not in top


@pytest.mark.parametrize("action, text, extra, match", [
    ("update", "item,name\nsku-999,x\n", [], "not in the bundle's 12 items"),
    ("update", "item,name\nsku-1,a\nsku-1,b\n", [], "more than once"),
    ("update", "product,name\nsku-1,a\n", [], "none of the id columns"),
    ("update", "product,name\nsku-1,a\n", ["--id-col", "code"], "has no column 'code'"),
    ("update", "item,name\n", [], "is empty"),
    ("add", "item,name\nsku-new,a\n", [], "no 'like' column"),
    ("add", "item,like\nsku-1,sku-2\n", [], "already in the bundle"),
    ("add", "item,like\nsku-new,sku-404\n", [], "not in the bundle's 12 items"),
    ("remove", "item\nsku-404\n", [], "not in the bundle's 12 items"),
])
def test_catalog_item_errors_are_typed_and_say_the_fix(built, tmp_path, action, text, extra, match):
    from edgecart.recs.catalog import ItemUpdateError
    from edgecart.runtime.errors import EdgecartError

    f = tmp_path / "items.csv"
    f.write_text(text)
    with pytest.raises(ItemUpdateError, match=match) as err:
        _catalog([action, built / "bundle", "--items", f, "--out", tmp_path / "v2", *extra])
    assert isinstance(err.value, EdgecartError) and not (tmp_path / "v2").exists()


def test_catalog_cli_refuses_pictures_for_a_recommendations_bundle(built, tmp_path, capsys):
    assert _catalog(["add", built / "bundle", "--images", tmp_path, "--out", tmp_path / "v2"]) == 2
    assert "give --items" in capsys.readouterr().err


def test_catalog_update_can_skip_rows_of_items_the_bundle_lacks(built, tmp_path, capsys):
    f = tmp_path / "all_items.csv"
    f.write_text("item,name\nsku-4,Four\nsku-999,not kept by the build\n")
    assert _catalog(["update", built / "bundle", "--items", f, "--out", tmp_path / "v2", "--skip-unknown"]) == 0
    assert "skipped 1 row(s)" in capsys.readouterr().out
    _, meta = _meta(tmp_path / "v2")
    assert meta["sku-4"] == {"name": "Four"} and "sku-999" not in meta


def test_a_bundle_built_without_items_gets_metadata_from_its_first_update(built, tmp_path):
    import shutil

    from edgecart.runtime import open_bundle

    plain = tmp_path / "plain"  # the built bundle as a build without --items writes it: no metadata file
    shutil.copytree(built / "bundle", plain)
    doc = json.loads((plain / "manifest.json").read_text())
    path = doc["catalog"].pop("metadata")
    doc["files"] = [f for f in doc["files"] if f["path"] != path]
    (plain / path).unlink()
    (plain / "manifest.json").write_text(json.dumps(doc))
    assert "metadata" not in open_bundle(plain).manifest.catalog
    f = tmp_path / "names.csv"
    f.write_text("item,name\nsku-1,One\n")
    assert _catalog(["update", plain, "--items", f, "--out", tmp_path / "v2"]) == 0
    _, meta = _meta(tmp_path / "v2")
    assert meta["sku-1"] == {"name": "One"} and meta["sku-2"] == {} and len(meta) == NUM_ITEMS


def test_recommendations_carry_item_metadata_and_a_key_is_checked(built, tmp_path, capsys):
    from edgecart.runtime import Recommender, SignatureError

    rec = Recommender(built / "bundle", backend="onnxruntime")
    r = rec.recommend(["sku-1", "sku-2"], k=3)
    assert len(r.metadata) == 3 and r.metadata == tuple({"name": f"Item {i.split('-')[1]}"} for i in r.items)
    assert _recommend_cli(["--bundle", built / "bundle", "--history", "sku-1", "--k", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["metadata"] == [{"name": f"Item {i.split('-')[1]}"} for i in doc["items"]]
    # the bundle is unsigned: with a key it is refused, from the library and from the command line
    assert _cli_main(["keygen", "--out", tmp_path / "k"]) == 0
    with pytest.raises(SignatureError, match="not signed"):
        Recommender(built / "bundle", backend="onnxruntime", public_key=tmp_path / "k" / "edgecart-signing.pub")
    capsys.readouterr()
    assert _recommend_cli(["--bundle", built / "bundle", "--history", "sku-1", "--public-key",
                           tmp_path / "k" / "edgecart-signing.pub"]) == 2
    assert "not signed" in capsys.readouterr().err


def _cli_main(argv):
    from edgecart.cli import main

    return main([str(a) for a in argv])


def _recommend_cli(argv):
    return _cli_main(["recommend", *argv])


def test_item_ids_are_looked_up_exactly_first():
    from edgecart.runtime.recommender import item_index, lookup

    index = item_index(["00007", "7", "12", "sku-1"])
    assert lookup(index, "00007") == 1 and lookup(index, "7") == 2  # two items, never merged
    assert lookup(index, 7) is None  # int 7 matches both "00007" and "7": ambiguous, so unknown
    assert lookup(index, 12) == 3 and lookup(index, " 12 ") == 3 and lookup(index, "012") == 3  # unambiguous
    assert lookup(index, "sku-1") == 4 and lookup(index, "sku-2") is None
    ints = item_index([5, 6])
    assert lookup(ints, "5") == 1 and lookup(ints, 6.0) == 2 and lookup(ints, "05") == 1


def test_zero_padded_item_ids_survive_build_recommend_and_catalog_updates(tmp_path):
    # A shop whose ids are '001' ... '011' and '1': the bundle keeps them as written ('001' and '1' are two items),
    # and a catalog update names them the same way (both once became the number 1 and were merged or refused).
    from edgecart.runtime import Recommender, open_bundle

    def shop_id(sku: str) -> str:
        n = int(sku.split("-")[1])
        return "1" if n == NUM_ITEMS else f"{n:03d}"

    rows = [(u, shop_id(i), ts, pos) for u, i, ts, pos in _log_rows()]
    log = _write_csv(tmp_path / "log.csv", rows)
    (tmp_path / "build.toml").write_text(TINY)
    args = _parser().parse_args(["build", "recommendations", "--interactions", str(log), "--user-col", "user",
                                 "--item-col", "item", "--time-col", "ts", "--config", str(tmp_path / "build.toml"),
                                 "--out", str(tmp_path / "out"), "--threads", "1"])
    assert args.func(args) == 0
    bundle = tmp_path / "out" / "bundle"
    r = Recommender(bundle, backend="onnxruntime").recommend(["006"], k=3)
    assert all(isinstance(i, str) for i in r.items) and set(r.items) <= {"1", *(f"{n:03d}" for n in range(1, 12))}
    f = tmp_path / "names.csv"
    f.write_text("item,name\n001,One\n1,Twelve\n8,Eight\n")  # '8' finds '008': the only item it can mean
    assert _catalog(["update", bundle, "--items", f]) == 0
    _, meta = _meta(bundle)
    assert meta["001"] == {"name": "One"} and meta["1"] == {"name": "Twelve"} and meta["008"] == {"name": "Eight"}
    assert open_bundle(bundle).manifest.catalog["num_items"] == NUM_ITEMS
