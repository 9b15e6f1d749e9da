"""The manifest dataclasses and the JSON Schema describe the same document."""

from __future__ import annotations

import dataclasses
import json
from importlib import resources

import jsonschema
import pytest
from edgecart.runtime import (
    Artifact,
    ImagePreprocessing,
    Manifest,
    ManifestError,
    SequencePreprocessing,
    TensorSpec,
    UnsafePathError,
    open_bundle,
)
from edgecart.runtime.manifest import FileEntry, Golden, Parity, Signature


@pytest.fixture(scope="module")
def schema():
    text = resources.files("edgecart.runtime").joinpath("manifest.schema.json").read_text()
    s = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(s)
    return s


def test_exported_manifest_validates_against_schema(tiny_bundle, schema):
    data = json.loads((tiny_bundle / "manifest.json").read_text())
    jsonschema.validate(data, schema)


def test_round_trip_is_lossless(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize("cls,schema_def", [
    (Manifest, None), (TensorSpec, "tensor"), (ImagePreprocessing, "image_preprocessing"),
    (SequencePreprocessing, "sequence_preprocessing"), (Artifact, "artifact"), (FileEntry, "file"),
    (Golden, "golden"), (Parity, "parity"), (Signature, "signature"),
])
def test_schema_and_dataclasses_name_the_same_fields(schema, cls, schema_def):
    node = schema if schema_def is None else schema["$defs"][schema_def]
    assert set(node["properties"]) == {f.name for f in dataclasses.fields(cls)}
    required = {f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    assert required <= set(node.get("required", [])) | {"kind"}


def test_sequence_preprocessing_manifest_validates(tiny_bundle, schema):
    m = open_bundle(tiny_bundle).manifest
    m = m.replace(preprocessing=SequencePreprocessing(max_len=50),
                  inputs=(TensorSpec(m.inputs[0].name, "int64", (1, 50)),))
    jsonschema.validate(m.to_dict(), schema)
    assert Manifest.from_json(m.to_json()).preprocessing == SequencePreprocessing(50)


@pytest.mark.parametrize("kwargs,match", [
    (dict(dtype="complex64"), "dtype"),
    (dict(shape=(1, 0)), r"shape\[1\].*out of range"),
    (dict(shape=(1, 1.7)), r"shape\[1\].*expected an integer"),
    (dict(shape=(True, 3)), r"shape\[0\].*expected an integer"),
    (dict(name=123), "name"),
    (dict(layout="NCHW"), "layout"),
])
def test_tensor_spec_validation(kwargs, match):
    base = dict(name="x", dtype="float32", shape=(1, 3))
    with pytest.raises(ManifestError, match=match):
        TensorSpec(**{**base, **kwargs})


def test_image_preprocessing_validation():
    with pytest.raises(ManifestError, match="mean/std"):
        ImagePreprocessing((28, 28), "grayscale", mean=(0.5, 0.5, 0.5))
    with pytest.raises(ManifestError, match="color"):
        ImagePreprocessing((28, 28), "cmyk")


def test_artifact_paths_must_stay_inside(tiny_bundle):
    with pytest.raises(UnsafePathError):
        Artifact(name="a", format="onnx", path="../a.onnx")
    with pytest.raises(ManifestError, match="format"):
        Artifact(name="a", format="coreml", path="a.mlmodel")


def test_artifact_must_refer_to_listed_files(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    ghost = Artifact(name="ghost", format="onnx", path="models/ghost.onnx")
    with pytest.raises(ManifestError, match="does not list"):
        m.replace(artifacts=(*m.artifacts, ghost))


def test_non_finite_metrics_refused():
    with pytest.raises(ManifestError, match="finite"):
        Artifact(name="a", format="onnx", path="a.onnx", quality={"recall@10": float("nan")})


def test_artifact_bytes_is_the_listed_size_of_its_files(tiny_bundle):
    m = Manifest.from_dict(json.loads((tiny_bundle / "manifest.json").read_text()))
    for a in m.artifacts:
        assert m.artifact_bytes(a) == (tiny_bundle / a.path).stat().st_size + sum(
            (tiny_bundle / p).stat().st_size for p in a.side_files)


def _spec(shape, dtype="float32"):
    return (TensorSpec("x", dtype, shape),)


@pytest.mark.parametrize("pre,shape,dtype", [
    (ImagePreprocessing((8, 6)), (1, 3, 8, 6), "float32"),
    (ImagePreprocessing((8, 6), layout="NHWC"), (1, 8, 6, 3), "float32"),
    (ImagePreprocessing((8, 6), color="grayscale", mean=(0.5,), std=(0.5,)), (2, 1, 8, 6), "float32"),
    (SequencePreprocessing(5), (1, 5), "int64"),
    (SequencePreprocessing(5), (1, 5, 16), "float32"),
])
def test_preprocessing_that_fits_the_models_input_passes(pre, shape, dtype):
    from edgecart.runtime.manifest import check_preprocessing

    check_preprocessing(pre, _spec(shape, dtype))


@pytest.mark.parametrize("pre,shape,dtype,says", [
    (ImagePreprocessing((8, 6)), (1, 3, 6, 8), "float32", "(N, 3, 8, 6)"),
    (ImagePreprocessing((8, 6)), (1, 8, 6, 3), "float32", "layout"),
    (ImagePreprocessing((8, 6), color="grayscale", mean=(0.5,), std=(0.5,)), (1, 3, 8, 6), "float32", "(N, 1, 8, 6)"),
    (ImagePreprocessing((8, 6)), (1, 48), "float32", "rank"),
    (ImagePreprocessing((8, 6)), (1, 3, 8, 6), "int64", "float"),
    (SequencePreprocessing(5), (1, 3, 8, 6), "float32", "(N, 5)"),
    (SequencePreprocessing(5), (1, 7), "int64", "(N, 5)"),
    (SequencePreprocessing(5), (1, 5), "float32", "integer"),
    (SequencePreprocessing(5), (1, 5, 16), "int64", "float"),
    (SequencePreprocessing(5), (1, 6, 16), "float32", "(N, 5, dim)"),
])
def test_preprocessing_that_does_not_fit_the_models_input_is_refused(pre, shape, dtype, says):
    from edgecart.runtime.manifest import check_preprocessing

    with pytest.raises(ManifestError, match="preprocessing") as exc:
        check_preprocessing(pre, _spec(shape, dtype))
    assert says in str(exc.value) and "--preprocessing" in str(exc.value)


def test_a_manifest_whose_preprocessing_does_not_fit_its_input_is_refused(tiny_bundle):
    m = open_bundle(tiny_bundle).manifest
    with pytest.raises(ManifestError, match="preprocessing"):
        m.replace(preprocessing=SequencePreprocessing(max_len=50))
