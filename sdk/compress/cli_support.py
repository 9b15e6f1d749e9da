"""What ``edgecart export`` and ``edgecart compress`` do, as library calls (the CLIs only parse arguments)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecart.config import ConfigError, from_dict, load_file
from edgecart.runtime.errors import BundleError
from edgecart.runtime.manifest import check_preprocessing

from .recipe import Recipe, load_recipe
from .user_model import input_shapes, load_model, parse_preprocessing, read_samples

Progress = Callable[[str], None]

#: How each caller names an input in the error messages: the ``edgecart export`` flag, the ``compress.toml`` key,
#: or the keyword of :func:`export_user_model` (``caller=`` picks the column).
_HINTS: dict[str, dict[str, str]] = {
    "export": {"overwrite": "pass --overwrite", "calibration": "--calibration inputs.npz",
               "train": "--train inputs.npz", "golden": "--golden inputs.npz", "formats": "--formats onnx,tflite",
               "validation": "--validation inputs.npz", "weights": "--weights model.pt"},
    "compress": {"overwrite": "set overwrite = true in the config (or pass --overwrite)",
                 "calibration": "calibration = 'inputs.npz'", "train": "train = 'inputs.npz'",
                 "golden": "golden = 'inputs.npz'", "formats": 'formats = ["onnx"]',
                 "validation": "validation = 'inputs.npz'", "weights": "weights = 'model.pt'"},
    "library": {"overwrite": "pass overwrite=True", "calibration": "calibration='inputs.npz'",
                "train": "train='inputs.npz'", "golden": "golden='inputs.npz'", "formats": 'formats=["onnx"]',
                "validation": "validation='inputs.npz'", "weights": "weights='model.pt'"},
}


def check_formats(formats: Any, hint: str = 'formats=["onnx"]') -> list[str]:
    """``formats`` as a list of known export format names; a string, an empty list or an unknown name is a
    ConfigError listing the known formats (before any work)."""
    from edgecart.exporters import EXPORTERS

    known = EXPORTERS.names()
    if isinstance(formats, str) or not isinstance(formats, (list, tuple)):
        raise ConfigError(f"formats must be a list of format names, e.g. {hint}; known: {known}")
    if not formats:
        raise ConfigError(f"no export formats given; name at least one, e.g. {hint}; known: {known}")
    for f in formats:
        if not isinstance(f, str):
            raise ConfigError(f"formats: {f!r} is not a format name; known: {known}")
        EXPORTERS[f]  # unknown names fail listing the known ones
    return list(formats)


def export_user_model(model_spec: str, *, out: str, formats: Sequence[str], recipe: str | Recipe | None = None,
                      calibration: str | None = None, golden: str | None = None, validation: str | None = None,
                      preprocessing: str | dict[str, Any] | None = None, weights: str | None = None,
                      name: str = "model", version: str = "0.1.0", input_names: Sequence[str] | None = None,
                      output_names: Sequence[str] | None = None, overwrite: bool = False, train: str | None = None,
                      progress: Progress | None = None, caller: str = "library") -> dict[str, Any]:
    """Load the model, apply the recipe's float stages (prune/distil) if any, export every format (int8 behind the
    gate when the recipe quantizes); returns a JSON-ready summary of the bundle. Missing inputs, an existing
    ``out`` and bad formats fail before any stage runs. ``caller`` (``"export"``, ``"compress"`` or ``"library"``)
    picks how error messages name the fix: a CLI flag, a ``compress.toml`` key or a keyword."""
    from edgecart.exporters import infer_io_spec

    from .pipeline import export_compressed

    hint = _HINTS.get(caller, _HINTS["library"])
    say = progress or (lambda _m: None)
    formats = check_formats(formats, hint["formats"])
    rec = load_recipe(recipe) if isinstance(recipe, (str, Path)) else recipe
    if Path(out).exists() and not overwrite:
        raise BundleError(f"{out} already exists; choose another output folder or {hint['overwrite']}")
    if rec is not None and rec.quantize is not None and not calibration:
        raise ConfigError(f"the recipe quantizes: give calibration inputs ({hint['calibration']})")
    if rec is not None and rec.distill is not None and not train:
        raise ConfigError(f"the recipe distils: give training inputs ({hint['train']})")
    for key, given in (("weights", weights), ("golden", golden), ("calibration", calibration),
                       ("validation", validation), ("train", train)):
        if given and not Path(given).is_file():
            raise ConfigError(f"{key}: {given}: no such file (give an existing file: {hint[key]})")
    if rec is not None:  # no teacher and no labels come through here: a distil stage needs a prune stage
        rec.check_distill_learns(cli=True)
    say(f"loading {model_spec}")
    notes: list[str] = []
    model, example = load_model(model_spec, weights, notes=notes)
    for n in notes:
        say(f"note: {n}")
    shapes = input_shapes(model, example)
    names = list(input_names) if input_names else None
    gold = read_samples(golden, shapes, names) if golden else []
    calib = read_samples(calibration, shapes, names) if calibration else []
    val = read_samples(validation, shapes, names) if validation else []
    if example is None:
        first = gold or calib
        if not first:
            raise ConfigError(f"the model carries no example inputs: give golden or calibration inputs "
                              f"({hint['golden']} or {hint['calibration']})")
        example, unbatch = _fit_samples(model, first[0], golden if gold else calibration, hint)
        if unbatch:  # the files are (samples, 1, *input): each sample already has its batch axis
            gold, calib, val = _unbatch(gold), _unbatch(calib), _unbatch(val)
    else:
        unbatch = False
    pre = parse_preprocessing(preprocessing)
    early = None
    if pre is not None:  # checked against the model's first input now, not when the bundle is written at the end
        early = infer_io_spec(model, tuple(example), names, output_names)
        check_preprocessing(pre, early.inputs)
    record: dict[str, Any] = {}
    staged = rec is not None and (rec.prune is not None or rec.distill is not None)
    if staged:
        context: dict[str, Any] = {}
        if rec.distill is not None:
            from .distill import DistillData

            rows = read_samples(str(train), shapes, names)
            rows = _unbatch(rows) if unbatch else rows
            import torch

            cols = [torch.cat([r[i] for r in rows]) for i in range(len(rows[0]))]
            # a .pt2 runs only at its exported batch size: distillation feeds it that many rows at a time
            context["data"] = DistillData(inputs=tuple(cols) if len(cols) > 1 else cols[0])
        model, record = rec.apply(model, example, progress=say, **context)
    declared = getattr(model, "io_spec", None)
    if declared is not None and not names and not output_names:
        io = declared
    elif early is not None and not staged:  # no float stage ran: the model is the one the early spec saw
        io = early
    else:
        io = infer_io_spec(model, tuple(example), names, output_names)
    manifest = export_compressed(model, tuple(example), out=out, formats=formats, recipe=rec, calibration=calib,
                                 validation=val, golden_inputs=gold, io_spec=io,
                                 preprocessing=pre, name=name, version=version,
                                 record=record, overwrite=overwrite, progress=say)
    return summarize(Path(out), manifest)


def _fit_samples(model: Any, example: tuple[Any, ...], source: str | None,
                 hint: dict[str, str]) -> tuple[tuple[Any, ...], bool]:
    """(the example to use, whether samples drop the batch axis :func:`read_samples` gave them) for a model whose
    input shapes are not known (a factory). Each ``(N, *input)`` sample is first given with a batch axis of 1; when
    the model rejects that and the arrays already carry one, ``(N, 1, *input)``, the samples are used as stored.
    A model that runs on neither is a ConfigError saying what shape the samples had and how to store them, not a
    traceback from inside the model."""
    import torch

    def fails(xs: tuple[Any, ...]) -> Exception | None:
        try:
            with torch.no_grad():
                model(*xs)
        except Exception as exc:  # noqa: BLE001 - a shape or dtype mismatch deep inside the user's model
            return exc
        return None

    exc = fails(example)
    if exc is None:
        return example, False
    if all(t.dim() >= 3 and t.shape[1] == 1 for t in example):
        stored = tuple(t[0] for t in example)
        if fails(stored) is None:
            return stored, True
    shapes = ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in example)
    why = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    raise ConfigError(f"the model fails on the samples of {source} ({type(exc).__name__}: {why[:300]}): each sample "
                      f"was given to it as {shapes}, with a batch axis of 1. Store each input as one array of "
                      "shape (samples, *input), e.g. (N, 3, 224, 224) for a model taking 3x224x224 images (or "
                      f"(samples, 1, *input)), in the dtype the model takes ({hint['golden']})") from None


def _unbatch(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(t[0] for t in r) for r in rows]


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


@dataclass(frozen=True)
class CompressFile:
    """The top-level keys of a ``compress.toml`` (besides the recipe's stages), typed: values of the wrong type fail
    through :func:`edgecart.config.from_dict`, naming the key, before any work. Relative paths are read from the
    config file's folder."""

    model: str
    weights: str | None = None
    out: str | None = None
    formats: tuple[str, ...] = ("executorch", "onnx", "tflite")
    calibration: str | None = None
    golden: str | None = None
    validation: str | None = None
    train: str | None = None
    preprocessing: str | dict[str, Any] | None = field(
        default=None, metadata={"expected": "a file name, inline JSON or a table"})
    name: str = "model"
    version: str = "0.1.0"
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    overwrite: bool = False


#: Keys of a ``compress.toml`` besides the recipe's stages.
COMPRESS_KEYS = tuple(f.name for f in dataclasses.fields(CompressFile))


def compress_from_config(path: str | Path, *, out: str | None = None, overwrite: bool | None = None,
                         progress: Progress | None = None) -> dict[str, Any]:
    """``edgecart compress --config compress.toml``: the model and data files at the top level, the recipe's
    ``[prune]`` / ``[distill]`` / ``[quantize]`` tables beside them (or under ``[recipe]``). Relative paths are
    read from the config file's folder. Values of the wrong type fail naming the key, before any work."""
    data = load_file(path)
    base = Path(path).parent
    stages = {k: data.pop(k) for k in ("prune", "distill", "quantize", "recipe") if k in data}
    unknown = sorted(set(data) - set(COMPRESS_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; known: {list(COMPRESS_KEYS)} and the stages "
                          "[prune], [distill], [quantize]")
    if "model" not in data:
        raise ConfigError(f"{path}: set model = 'model.pt2' (or 'package.module:factory')")
    try:
        spec = from_dict(CompressFile, data, "compress")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {str(exc).removeprefix('compress.')}") from None
    if "formats" in data:
        check_formats(spec.formats, _HINTS["compress"]["formats"])
    table = stages.pop("recipe", None) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [recipe] must be a table")
    recipe = Recipe.from_dict({"name": data.get("name", "recipe"), **table, **stages})

    def rel(key: str) -> str | None:
        v = getattr(spec, key)
        if v is None:
            return None
        return str(base / v) if not Path(v).is_absolute() else str(v)

    model_spec = rel("model") if spec.model.endswith(".pt2") else spec.model
    pre = spec.preprocessing
    if isinstance(pre, str) and not pre.strip().startswith("{"):  # a file name, not inline JSON
        pre = rel("preprocessing")
    return export_user_model(
        model_spec, out=out or rel("out") or str(base / "bundle"), formats=spec.formats, recipe=recipe,
        calibration=rel("calibration"), golden=rel("golden"), validation=rel("validation"), train=rel("train"),
        preprocessing=pre, weights=rel("weights"), name=spec.name, version=spec.version,
        input_names=spec.input_names, output_names=spec.output_names,
        overwrite=spec.overwrite if overwrite is None else overwrite, progress=progress, caller="compress")


__all__ = ["check_formats", "compress_from_config", "export_user_model", "summarize"]
