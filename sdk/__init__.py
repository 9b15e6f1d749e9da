"""edgecart — distil, compress, export, bundle, run and benchmark e-commerce models on the edge."""

import os as _os

# ONNX Runtime (1.32) otherwise writes a telemetry database under ~/.cache/Microsoft (see edgecart.runtime)
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

__version__ = "0.1.0"
