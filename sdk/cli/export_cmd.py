"""``edgecart export MODEL.pt2``: a user's model (saved with ``torch.export.save``) to a verified bundle."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._summary import print_bundle_summary


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a torch.export-saved model (.pt2) to a verified multi-format bundle",
                       description="Export MODEL.pt2 (torch.export.save) to ExecuTorch, ONNX and LiteRT as one "
                       "bundle, each artifact checked against the model on golden inputs; with --recipe, int8 too.")
    p.add_argument("model", help="MODEL.pt2 written by torch.export.save, or package.module:factory")
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--formats", default="executorch,onnx,tflite", help="comma-separated (default: all three)")
    p.add_argument("--recipe", default=None, help="compression recipe (.toml/.json): its quantize stage adds int8")
    p.add_argument("--calibration", default=None, help=".npz of calibration inputs (needed for int8)")
    p.add_argument("--train", default=None, help=".npz of training inputs (needed when the recipe distils)")
    p.add_argument("--golden", default=None, help=".npz of golden inputs (default: the saved example inputs)")
    p.add_argument("--validation", default=None, help=".npz of inputs for the int8 gate (default: calibration)")
    p.add_argument("--preprocessing", default=None, help="JSON/TOML file or inline JSON describing input "
                   "preprocessing, e.g. '{\"kind\": \"image\", \"size\": [224, 224]}'")
    p.add_argument("--weights", default=None, help="state dict for a package.module:factory model")
    p.add_argument("--name", default="model")
    p.add_argument("--version", default="0.1.0")
    p.add_argument("--input-names", default=None, help="comma-separated (default input_0, input_1, ...)")
    p.add_argument("--output-names", default=None, help="comma-separated (default output_0, ...)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing bundle at --out")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(f"edgecart export: {msg}", file=sys.stderr, flush=True)


def note(artifact: dict[str, Any]) -> str:
    """The last column of an artifact's summary line: its parity with the model."""
    return f"parity cos {artifact['parity_cosine']}"


def run(args: argparse.Namespace) -> int:
    from edgecart.compress.cli_support import export_user_model
    from edgecart.config import ConfigError
    from edgecart.exporters import EXPORTERS

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    if not formats:
        raise ConfigError(f"--formats names no format; give a comma-separated list of {EXPORTERS.names()}, e.g. "
                          "--formats onnx,tflite")
    summary = export_user_model(
        args.model, out=args.out, formats=formats, train=args.train, caller="export",
        recipe=args.recipe, calibration=args.calibration, golden=args.golden, validation=args.validation,
        preprocessing=args.preprocessing, weights=args.weights, name=args.name, version=args.version,
        input_names=args.input_names.split(",") if args.input_names else None,
        output_names=args.output_names.split(",") if args.output_names else None, overwrite=args.overwrite,
        progress=_say)
    print_bundle_summary(summary, args.json, note)
    return 0
