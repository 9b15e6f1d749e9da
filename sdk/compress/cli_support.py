"""What ``edgecart export`` and ``edgecart compress`` do, as library calls (the CLIs only parse arguments)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgecart.config import ConfigError, load_file

from .recipe import Recipe, load_recipe
from .user_model import input_shapes, load_model, parse_preprocessing, read_samples

Progress = Callable[[str], None]


def export_user_model(model_spec: str, *, out: str, formats: Sequence[str], recipe: str | Recipe | None = None,
                      calibration: str | None = None, golden: str | None = None, validation: str | None = None,
                      preprocessing: str | dict[str, Any] | None = None, weights: str | None = None,
                      name: str = "model", version: str = "0.1.0", input_names: Sequence[str] | None = None,
                      output_names: Sequence[str] | None = None, overwrite: bool = False, train: str | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """Load the model, apply the recipe's float stages (prune/distil) if any, export every format (int8 behind the
    gate when the recipe quantizes); returns a JSON-ready summary of the bundle."""
    from edgecart.exporters import infer_io_spec

    from .pipeline import export_compressed

    say = progress or (lambda _m: None)
    say(f"loading {model_spec}")
    model, example = load_model(model_spec, weights)
    rec = load_recipe(recipe) if isinstance(recipe, (str, Path)) else recipe
    shapes = input_shapes(model, example)
    names = list(input_names) if input_names else None
    gold = read_samples(golden, shapes, names) if golden else []
    calib = read_samples(calibration, shapes, names) if calibration else []
    val = read_samples(validation, shapes, names) if validation else []
    if example is None:
        first = gold or calib
        if not first:
            raise ConfigError("the model carries no example inputs: pass --golden or --calibration inputs.npz")
        example = first[0]
    record: dict[str, Any] = {}
    if rec is not None and (rec.prune is not None or rec.distill is not None):
        context: dict[str, Any] = {}
        if rec.distill is not None:
            if not train:
                raise ConfigError("the recipe distils: give training inputs (train = 'inputs.npz')")
            from .distill import DistillData

            rows = read_samples(train, shapes, names)
            import torch

            cols = [torch.cat([r[i] for r in rows]) for i in range(len(rows[0]))]
            context["data"] = DistillData(inputs=tuple(cols) if len(cols) > 1 else cols[0])
        model, record = rec.apply(model, example, progress=say, **context)
    declared = getattr(model, "io_spec", None)
    io = declared if declared is not None and not names and not output_names else infer_io_spec(
        model, tuple(example), names, output_names)
    manifest = export_compressed(model, tuple(example), out=out, formats=formats, recipe=rec, calibration=calib,
                                 validation=val, golden_inputs=gold, io_spec=io,
                                 preprocessing=parse_preprocessing(preprocessing), name=name, version=version,
                                 record=record, overwrite=overwrite, progress=say)
    return summarize(Path(out), manifest)


def summarize(path: Path, manifest: Any) -> dict[str, Any]:
    arts = []
    for a in manifest.artifacts:
        arts.append({"name": a.name, "format": a.format, "precision": a.precision, "path": a.path,
                     "bytes": manifest.artifact_bytes(a), "recipe": (a.quantization or {}).get("recipe"),
                     "parity_cosine": a.parity.cosine if a.parity else None,
                     "parity_max_abs": a.parity.max_abs_diff if a.parity else None, "quality": dict(a.quality)})
    return {"bundle": str(path), "name": manifest.name, "version": manifest.version,
            "inputs": [dataclasses.asdict(s) for s in manifest.inputs],
            "outputs": [dataclasses.asdict(s) for s in manifest.outputs], "artifacts": arts,
            "int8_rejected": manifest.quality.get("int8_rejected", {}),
            "compression": manifest.quality.get("compression")}


#: Keys of a ``compress.toml`` besides the recipe's stages.
COMPRESS_KEYS = ("model", "weights", "out", "formats", "calibration", "golden", "validation", "train",
                 "preprocessing", "name", "version", "input_names", "output_names", "overwrite")


def compress_from_config(path: str | Path, *, out: str | None = None, overwrite: bool | None = None,
                         progress: Progress | None = None) -> dict[str, Any]:
    """``edgecart compress --config compress.toml``: the model and data files at the top level, the recipe's
    ``[prune]`` / ``[distill]`` / ``[quantize]`` tables beside them (or under ``[recipe]``). Relative paths are
    read from the config file's folder."""
    data = load_file(path)
    base = Path(path).parent
    stages = {k: data.pop(k) for k in ("prune", "distill", "quantize", "recipe") if k in data}
    unknown = sorted(set(data) - set(COMPRESS_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {list(COMPRESS_KEYS)} and the stages "
                          "[prune], [distill], [quantize]")
    if "model" not in data:
        raise ConfigError(f"{path}: set model = 'model.pt2' (or 'package.module:factory')")
    table = stages.pop("recipe", None) or {}
    recipe = Recipe.from_dict({"name": data.get("name", "recipe"), **table, **stages})

    def rel(key: str) -> str | None:
        v = data.get(key)
        if v is None:
            return None
        return str(base / v) if not Path(v).is_absolute() else str(v)

    model = data["model"]
    model_spec = rel("model") if str(model).endswith(".pt2") else str(model)
    return export_user_model(
        model_spec, out=out or rel("out") or str(base / "bundle"), formats=data.get("formats", (
            "executorch", "onnx", "tflite")), recipe=recipe, calibration=rel("calibration"), golden=rel("golden"),
        validation=rel("validation"), train=rel("train"), preprocessing=data.get("preprocessing"),
        weights=rel("weights"), name=data.get("name", "model"), version=data.get("version", "0.1.0"),
        input_names=data.get("input_names"), output_names=data.get("output_names"),
        overwrite=bool(data.get("overwrite", False)) if overwrite is None else overwrite, progress=progress)


__all__ = ["compress_from_config", "export_user_model", "summarize"]
