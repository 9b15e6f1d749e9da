"""edgecart.runtime — verify a release bundle and run it on-device. Needs numpy and one engine; never torch."""

from __future__ import annotations

from .bundle import Bundle, open_bundle, sha256_file, verify
from .errors import (
    ArtifactNotFoundError,
    BackendUnavailableError,
    BundleError,
    EdgecartError,
    InputSpecError,
    IntegrityError,
    ManifestError,
    MissingFileError,
    ParityError,
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
    TensorSpec,
    TextPreprocessing,
)
from .recommender import Recommendation, Recommender
from .search import Catalog, ImageSearch, SearchResult
from .session import Session, available_backends, load, select
from .text import TextSearch

__all__ = [
    "SCHEMA_VERSION", "Artifact", "ArtifactNotFoundError", "BackendUnavailableError", "Bundle", "BundleError",
    "Catalog", "EdgecartError", "FileEntry", "Golden", "ImagePreprocessing", "ImageSearch", "InputSpecError", "IOSpec",
    "IntegrityError", "Manifest", "ManifestError", "MissingFileError", "Parity", "ParityError", "Recommendation",
    "Recommender", "SearchResult", "SequencePreprocessing", "Session", "TensorSpec", "UnknownNameError",
    "UnlistedFileError", "UnsafePathError", "available_backends", "load", "open_bundle", "select", "sha256_file",
    "verify",
    "TextPreprocessing", "TextSearch",
]
