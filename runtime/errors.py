"""Typed errors of the edgecart runtime. Each message says what went wrong and how to fix it."""

from __future__ import annotations


class EdgecartError(Exception):
    """Base class of every error edgecart raises on purpose."""


class BundleError(EdgecartError):
    """A bundle cannot be used as it is."""


class ManifestError(BundleError):
    """manifest.json is missing, unreadable, of an unknown schema version, or malformed."""


class MissingFileError(BundleError):
    """A file the manifest lists is not in the bundle."""


class IntegrityError(BundleError):
    """A file's size or sha256 differs from what the manifest records.

    Without a signature this detects accidental corruption (a cut download, a flipped bit, a wrong file), not
    deliberate tampering: whoever can edit a file can edit the manifest's hash too. Sign bundles for that.
    """


class UnlistedFileError(BundleError):
    """The bundle holds a file the manifest does not list."""


class UnsafePathError(BundleError):
    """A path in the manifest escapes the bundle directory or is not a plain relative path."""


class OutputPathError(EdgecartError, ValueError):
    """An output path cannot be used: it lies inside the bundle being read, or is an existing folder where a file is
    written (or the reverse). Nothing was written."""


class SignatureError(BundleError):
    """A public key was given and the bundle is unsigned, signed by another key, or its signature does not match."""


class ArchiveLimitError(BundleError):
    """A bundle archive exceeds a cap (members, bytes per file, bytes in total): refused before anything is written."""


class SigningUnavailableError(EdgecartError, ImportError):
    """Signing or checking a signature needs the ``cryptography`` package: ``pip install 'edgecart[sign]'``."""


class ArtifactNotFoundError(BundleError):
    """No artifact in the bundle matches the requested name, format or precision."""


class ParityError(BundleError):
    """An exported artifact does not reproduce the reference model within the stated tolerance."""


class InputSpecError(EdgecartError, ValueError):
    """Inputs passed to a session do not match the bundle's declared I/O spec."""


class BackendUnavailableError(EdgecartError, ImportError):
    """The engine a backend needs is not installed."""


class UnknownNameError(EdgecartError, KeyError):
    """A name looked up in a registry (backend, exporter format, ...) is not known."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class EngineError(BundleError):
    """An inference engine (ONNX Runtime, LiteRT, ExecuTorch) refused or failed on an artifact. The message names the
    artifact and carries the engine's own message."""


class ModelLoadError(EngineError):
    """An artifact's model file is malformed, or its engine could not load it (found before or by the engine)."""


class InferenceError(EngineError):
    """An engine failed while running an artifact, or returned outputs that break the manifest's I/O spec
    (wrong size, NaN or Inf)."""


class NonFiniteOutputError(InferenceError):
    """An engine returned NaN or Inf for finite inputs (load with ``check_finite=False`` to get them anyway)."""
