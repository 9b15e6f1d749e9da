"""Open a bundle for one task's runtime class: verify it, check its task and its preprocessing, with one message style.

Private to :mod:`edgecart.runtime` (``ImageSearch``, ``TextSearch``, ``Recommender``); imports only runtime modules
(no torch).
"""

from __future__ import annotations

import os
from typing import Any

from .bundle import Bundle, open_bundle
from .errors import BundleError, ManifestError

#: Which runtime class reads a task's bundles (named in the message when a bundle goes to the wrong one).
TASK_READERS: dict[str, str] = {
    "image_search": "edgecart.runtime.ImageSearch",
    "recommendations": "edgecart.runtime.Recommender",
    "text_search": "edgecart.runtime.TextSearch",
}


def open_task_bundle(bundle: str | os.PathLike[str] | Bundle, task: str, preprocessing: type,
                     reader: str, public_key: Any = None) -> Bundle:
    """``bundle`` opened and verified (unless already a :class:`Bundle`), refused unless its manifest's task is
    ``task`` (:class:`BundleError`) and its preprocessing an instance of ``preprocessing`` (:class:`ManifestError`).
    ``reader`` is the calling class's name, for the messages."""
    if isinstance(bundle, Bundle):
        b = bundle
        if public_key is not None:  # opened earlier, perhaps without a key: its manifest's signature is checked now
            from .signing import verify_manifest_signature

            verify_manifest_signature(b.manifest, public_key)
    else:
        b = open_bundle(bundle, public_key=public_key)
    m = b.manifest
    if m.task != task:
        other = TASK_READERS.get(m.task)
        fix = f"open it with {other}" if other else f"export a {task!r} bundle for {reader}"
        raise BundleError(f"bundle {m.name!r} is a {m.task!r} bundle, not {task}: {reader} reads only {task!r} "
                          f"bundles; {fix}")
    if not isinstance(m.preprocessing, preprocessing):
        got = type(m.preprocessing).__name__ if m.preprocessing is not None else "none"
        raise ManifestError(f"bundle {m.name!r} is a {task!r} bundle without {preprocessing.__name__} (it declares "
                            f"{got}); re-export it with the {task} pipeline")
    return b
