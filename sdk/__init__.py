"""edgecart — distil, compress, export, bundle, run and benchmark e-commerce models on the edge."""

import os as _os

# ONNX Runtime (1.32) otherwise writes a telemetry database under ~/.cache/Microsoft (see edgecart.runtime)
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def _private_inductor_cache() -> None:
    """torch.export imports inductor's config, which makes ``<TMPDIR>/torchinductor_<user>`` and leaves it behind.
    Unless the user chose a folder, point it at one of this process's own, removed when the process ends (edgecart
    compiles nothing with inductor, so no cache worth keeping is lost)."""
    if "TORCHINDUCTOR_CACHE_DIR" in _os.environ:
        return
    import atexit
    import shutil
    import tempfile

    folder = _os.path.join(tempfile.gettempdir(), f"edgecart-inductor-{_os.getpid()}")
    _os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    atexit.register(shutil.rmtree, folder, True)


_private_inductor_cache()

__version__ = "0.1.0"
