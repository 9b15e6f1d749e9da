"""The guest side of the emulated ARM64 target: run each artifact of a bundle on its golden inputs and on the task
inputs, and write JSON-ready results. ``benchmarks/targets_qemu.py`` copies this file into the guest as ``probe.py``
and runs it there (``python3 probe.py probe BUNDLE RUNNABLE_JSON TASK_NPY|- OUT_JSON``); it also runs in-process on
this machine for the x86 reference. Its top level imports only the standard library, so it runs in the guest with
nothing but numpy, an engine and the copied ``edgecart.runtime``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

TOP_K = 10


def probe(bundle: str, runnable: list[tuple[str, str]], task_path: str | None) -> dict[str, Any]:
    """Run each (artifact, backend) on the golden inputs and on the task inputs; JSON-ready results per artifact."""
    import platform

    import numpy as np
    from edgecart.runtime import ImageSearch, Recommender, load, open_bundle
    from edgecart.runtime.golden import check_golden

    b = open_bundle(bundle)
    m = b.manifest
    task = np.load(task_path) if task_path else None
    res: dict[str, Any] = {"_environment": {"machine": platform.machine(), "python": platform.python_version(),
                                            "numpy": np.__version__, "cpu": _cpu_line()}}
    for name, backend in runnable:
        try:
            r: dict[str, Any] = {}
            s = load(b, backend, artifact=name, threads=1)
            a = check_golden(s)
            r["golden"] = {"max_abs_diff": a.max_abs_diff, "cosine": a.cosine, "samples": a.samples}
            try:  # raw-image test vectors: decoded and preprocessed here, on ARM (needs Pillow in the guest)
                from edgecart.runtime.preprocess import check_test_vectors

                r["test_vectors"] = check_test_vectors(b, s.run)
            except Exception as exc:
                r["test_vectors_error"] = f"{type(exc).__name__}: {exc}"
            if task is not None and m.task == "recommendations":
                rec = Recommender(b, backend, threads=1, artifact=name)
                outs, tops = [], []
                for h in task:
                    ids = [rec.items[int(i) - 1].item() for i in h if i > 0]
                    x = rec._pad([int(i) for i in h if i > 0])
                    outs.append(rec.session.run(x)[rec._output][0].tolist())
                    tops.append([_jsonable(v) for v in rec.recommend(ids, k=TOP_K).items])
                r["outputs"], r["top"] = outs, tops
            elif task is not None:
                out_name = m.outputs[0].name
                outs = [s.run(x)[out_name].reshape(-1) for x in task]
                r["outputs"] = [o.tolist() for o in outs]
                if m.task == "image_search":
                    srch = ImageSearch(b, backend, threads=1, artifact=name)
                    r["top"] = [[_jsonable(v) for v in srch.search_embedding(o, k=TOP_K).ids] for o in outs]
            res[name] = r
        except Exception as exc:  # reported per artifact; the other artifacts still run
            res[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return res


def _jsonable(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _cpu_line() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "?"
    part = re.search(r"CPU part\s*:\s*(\S+)", text)
    name = re.search(r"model name\s*:\s*(.+)", text)
    return ", ".join(x for x in ((name.group(1).strip() if name else None),
                                 (f"part {part.group(1)}" if part else None)) if x) or "?"


def _main(argv: list[str]) -> int:
    if len(argv) == 5 and argv[0] == "probe":
        bundle, runnable, task, out = argv[1], json.loads(argv[2]), argv[3], argv[4]
        res = probe(bundle, [tuple(x) for x in runnable], None if task == "-" else task)
        Path(out).write_text(json.dumps(res))
        return 0
    print("usage: probe.py probe BUNDLE RUNNABLE_JSON TASK_NPY|- OUT_JSON", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
