"""Real data loaders: Fashion-MNIST, image folders, Instacart orders, MovieLens-100K; and the one phrase every reader
of a user's text file uses to say how to make it UTF-8."""

from __future__ import annotations

from pathlib import Path


def utf8_fix(path: str | Path) -> str:
    """How to convert ``path`` to UTF-8 (the end of each reader's error for a file in another encoding)."""
    p = Path(path)
    return f"convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 {p} > {p.with_name(p.stem + '-utf8' + p.suffix)}"
