"""edgecart.runtime — verify a release bundle and run it on-device. Needs numpy and one engine; never torch."""

from __future__ import annotations

import os as _os

# ONNX Runtime (1.32) otherwise keeps a telemetry database and a device id under ~/.cache/Microsoft: running a bundle
# writes nothing outside the paths its user gave. Set ORT_DISABLE_TELEMETRY=0 before importing edgecart to allow it.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .bundle import Bundle, open_bundle, sha256_file, verify
from .errors import (
    ArchiveLimitError,
    ArtifactNotFoundError,
    BackendUnavailableError,
    BundleError,
    EdgecartError,
    EngineError,
    InferenceError,
    InputSpecError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    ModelLoadError,
    NonFiniteOutputError,
    OutputPathError,
    ParityError,
    SignatureError,
    SigningUnavailableError,
    UnknownNameError,
    UnlistedFileError,
    UnsafePathError,
)
from .manifest import (
    SCHEMA_VERSION,
    Artifact,
    FileEntry,
    Golden,
    ImagePreprocessing,
    IOSpec,
    Manifest,
    Parity,
    SequencePreprocessing,
    Signature,
    TensorSpec,
    TextPreprocessing,
)
from .recommender import Recommendation, Recommender
from .search import Catalog, ImageSearch, SearchResult
from .session import Session, available_backends, load, select
from .text import TextSearch

__all__ = [
    "SCHEMA_VERSION", "ArchiveLimitError", "Artifact", "ArtifactNotFoundError", "BackendUnavailableError", "Bundle",
    "BundleError", "Catalog", "EdgecartError", "EngineError", "FileEntry", "Golden", "ImagePreprocessing",
    "ImageSearch", "InferenceError", "InputSpecError", "IOSpec", "ModelLoadError", "NonFiniteOutputError",
    "OutputPathError",
    "IntegrityError", "Manifest", "ManifestError", "MissingFileError", "Parity", "ParityError", "Recommendation",
    "Recommender", "SearchResult", "SequencePreprocessing", "Session", "Signature", "SignatureError",
    "SigningUnavailableError", "TensorSpec", "UnknownNameError",
    "UnlistedFileError", "UnsafePathError", "available_backends", "load", "open_bundle", "select", "sha256_file",
    "verify",
    "TextPreprocessing", "TextSearch",
]
