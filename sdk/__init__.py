"""edgecart — distil, compress, export, bundle, run and benchmark e-commerce models on the edge."""

__version__ = "0.1.0"
