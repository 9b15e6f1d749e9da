"""``distill(student, teacher, data, config)``: the distillation trainer shared by every task.

The loss is a weighted sum of terms from :mod:`edgecart.compress.losses` (``config.losses``). The teacher is a
module run on each batch under ``no_grad`` or, cheaper, its outputs computed once (``DistillData.teacher_outputs``,
one row per training example). Batches come from tensors indexed by row or from a callable that builds the inputs of
a set of rows (augmentation goes there).

* **Progress**: a bar on a terminal, a line every few seconds otherwise, with the loss and the rate.
* **Model selection**: with ``validate`` (student -> score, higher is better; run on a validation split) the best
  epoch's weights are kept, and ``config.patience`` stops after that many epochs without improvement.
* **Checkpoints and resume**: with ``checkpoint_dir`` the state (student, hint projections, optimiser, schedule,
  epoch, best weights, history, torch RNG) is written atomically after every ``config.checkpoint_every`` epochs;
  ``resume=True`` continues from it. Batch order depends only on (seed, epoch), so a resumed run equals an
  uninterrupted one.
* **Several processes** (``torchrun --nproc_per_node N ...``, gloo on CPU): each rank trains on its slice of every
  global batch and DDP averages the gradients, weighted so that the update equals the single-process one — the same
  result within float tolerance, as long as the model has no batch statistics (BatchNorm in train mode sees only
  the rank's slice) and no loss term looks across the batch (``relational`` sees the rank's slice). Every rank must
  hold the same teacher (load it from one file; torchrun's workers do not share a random state) — DDP makes the
  students equal by broadcasting rank 0's weights.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from edgecart.config import ConfigError
from edgecart.runtime.errors import EdgecartError, UnknownNameError

from .losses import Hint, LossTerm, loss_from_dict

SCHEDULES = ("constant", "cosine")


class DistillError(EdgecartError, ValueError):
    """A distillation run cannot go on as asked (bad data, a checkpoint of another run, ...)."""


@dataclass(frozen=True)
class DistillConfig:
    """How to distil: loss terms, optimiser (AdamW), schedule, epochs, early stopping and checkpoints."""

    losses: tuple[LossTerm, ...]
    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "cosine"
    warmup: float = 0.0
    grad_clip: float | None = None
    patience: int | None = None
    checkpoint_every: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.losses, LossTerm):
            raise ConfigError(f"DistillConfig.losses is a tuple of loss terms: losses=({type(self.losses).__name__}"
                              f"(),), not losses={type(self.losses).__name__}()")
        if not isinstance(self.losses, (tuple, list)):
            raise ConfigError(f"DistillConfig.losses must be a tuple of loss terms (edgecart.compress.losses), e.g. "
                              f"losses=(MSE(),), got {type(self.losses).__name__} {self.losses!r}")
        object.__setattr__(self, "losses", tuple(self.losses))
        if not self.losses or not all(isinstance(t, LossTerm) for t in self.losses):
            raise ConfigError("DistillConfig.losses must be a non-empty tuple of loss terms "
                              f"(edgecart.compress.losses), e.g. losses=(MSE(),), got {self.losses!r}")
        for n in ("epochs", "batch_size", "checkpoint_every"):
            v = getattr(self, n)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"DistillConfig.{n} must be an integer >= 1, got {v!r}")
        for n in ("lr", "weight_decay", "warmup"):
            _check_number(n, getattr(self, n))
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip)
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError(f"DistillConfig: lr must be > 0 and weight_decay >= 0, got lr={self.lr!r}, "
                              f"weight_decay={self.weight_decay!r}")
        if self.schedule not in SCHEDULES:
            raise UnknownNameError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if not 0 <= self.warmup < 1:
            raise ConfigError(f"DistillConfig.warmup is a fraction of the steps in [0, 1), got {self.warmup!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"DistillConfig.grad_clip must be > 0 when given, got {self.grad_clip!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or isinstance(self.patience, bool)
                                          or self.patience < 1):
            raise ConfigError(f"DistillConfig.patience must be an integer >= 1 when given, got {self.patience!r}")

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["losses"] = [t.to_dict() for t in self.losses]
        return d

    @classmethod
    def from_dict(cls, data: Any) -> DistillConfig:
        if not isinstance(data, dict):
            raise ConfigError(f"a distillation config is an object (a table), got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UnknownNameError(f"unknown DistillConfig option(s) {unknown}; known: {sorted(known)}")
        from edgecart.config import from_dict

        d = dict(data)
        if "losses" in d:
            if not isinstance(d["losses"], (list, tuple)):
                raise ConfigError(f"DistillConfig.losses: expected a list of loss terms, got {d['losses']!r}")
            d["losses"] = tuple(loss_from_dict(x, f"DistillConfig.losses[{i}]") for i, x in enumerate(d["losses"]))
        return from_dict(cls, d, "DistillConfig")  # value types checked, naming the field


def _check_number(name: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ConfigError(f"DistillConfig.{name} must be a number, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class DistillData:
    """Training rows: ``inputs`` (a tensor or tuple of tensors indexed by row, or a callable rows -> tuple of
    tensors), optional ``labels`` (tensor, one per row) and optional cached ``teacher_outputs`` (tensor or dict of
    tensors, one row per training row). ``size`` is the number of rows (inferred from tensors)."""

    inputs: Any
    labels: Any = None
    teacher_outputs: Any = None
    size: int | None = None

    def __post_init__(self) -> None:
        n = self.size
        if n is None:
            first = self.inputs[0] if isinstance(self.inputs, (tuple, list)) else self.inputs
            if callable(first) and not hasattr(first, "shape"):
                raise DistillError("DistillData: pass size= when inputs is a callable")
            n = len(first)
        if n < 1:
            raise DistillError("DistillData: no training rows")
        for what, v in (("labels", self.labels), ("teacher_outputs", self.teacher_outputs)):
            vs = v.values() if isinstance(v, dict) else ([] if v is None else [v])
            if any(len(x) != n for x in vs):
                raise DistillError(f"DistillData: {what} must have one row per training row ({n})")
        object.__setattr__(self, "size", int(n))

    def batch_inputs(self, rows: np.ndarray) -> tuple[Any, ...]:
        import torch

        if callable(self.inputs) and not hasattr(self.inputs, "shape"):
            x = self.inputs(rows)
            return tuple(x) if isinstance(x, (tuple, list)) else (x,)
        ix = torch.from_numpy(rows)
        xs = self.inputs if isinstance(self.inputs, (tuple, list)) else (self.inputs,)
        return tuple(x[ix] for x in xs)


@dataclass(frozen=True)
class DistillResult:
    losses: tuple[float, ...]
    scores: tuple[float, ...]
    best_epoch: int
    epochs_run: int
    seconds: float
    world_size: int = 1
    resumed_from: int = 0
    stopped_early: bool = False
    config: dict[str, Any] = field(default_factory=dict)


def distill(student: Any, teacher: Any, data: DistillData, config: DistillConfig, *,
            validate: Callable[[Any], float] | None = None, checkpoint_dir: str | os.PathLike[str] | None = None,
            resume: bool = False, desc: str = "distil", progress: bool = True) -> DistillResult:
    """Train ``student`` in place to match ``teacher`` (a module, or None with cached outputs / label-only terms).

    Returns the per-epoch mean losses and validation scores; the student ends with the best epoch's weights when
    ``validate`` is given, else the last epoch's. Under ``torchrun`` the processes form a gloo group by themselves
    (closed at exit) unless the caller formed one.
    """
    import torch
    from edgecart.progress import progress_iter

    t0 = time.perf_counter()
    rank, world = _init_distributed()
    needs_teacher = any(t.needs_teacher for t in config.losses)
    if needs_teacher and teacher is None and data.teacher_outputs is None:
        raise DistillError("these loss terms need a teacher: pass a teacher module or DistillData(teacher_outputs=)")
    torch.manual_seed(config.seed)
    projections = _projections(student, teacher, data, config)
    params = [p for p in student.parameters() if p.requires_grad] + [p for m in projections.values()
                                                                      for p in m.parameters()]
    model = student
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(student)
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(data.size / config.batch_size)
    steps = per_epoch * config.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(config, steps))
    state = {"epoch": 0, "losses": [], "scores": [], "best": -math.inf, "best_epoch": 0, "best_state": None,
             "stale": 0}
    ckpt = Path(checkpoint_dir) / "distill-checkpoint.pt" if checkpoint_dir is not None else None
    resumed = 0
    if resume and ckpt is not None and ckpt.is_file():
        resumed = _load_checkpoint(ckpt, student, projections, opt, sched, state, config)
        if resumed and (validate is not None) != bool(state["scores"]):
            was, now, harm = (("with", "without", "bring back an earlier best epoch instead of the last")
                              if state["scores"] else
                              ("without", "with", "pick a best epoch among epochs never scored"))
            raise DistillError(f"{ckpt} was written by a run {was} validate=; resuming it {now} one would {harm}; "
                               f"resume {was} validate=, or delete the checkpoint to start over")
    if teacher is not None and hasattr(teacher, "eval"):
        teacher.eval()
    stopped = False
    for epoch in range(state["epoch"], config.epochs):
        model.train()
        order = np.random.default_rng([config.seed, epoch]).permutation(data.size)
        batches = [order[i:i + config.batch_size] for i in range(0, data.size, config.batch_size)]
        it = progress_iter(batches, desc=f"{desc} epoch {epoch + 1}/{config.epochs}", unit="batch") \
            if progress and rank == 0 else batches
        total, done = 0.0, 0
        for rows in it:
            mine = np.array_split(rows, world)[rank] if world > 1 else rows
            loss = _batch_loss(model, teacher, data, config, projections, mine)
            # each rank's mean loss weighted by its share, so DDP's gradient average equals the global mean
            scaled = loss * (len(mine) * world / len(rows)) if world > 1 else loss
            opt.zero_grad(set_to_none=True)
            scaled.backward()
            if world > 1:
                _sync_projection_grads(projections, world)
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            opt.step()
            sched.step()
            total += float(_global_mean(loss.detach() * len(mine), len(rows), world))
            done += 1
            if progress and rank == 0 and hasattr(it, "set_postfix"):
                it.set_postfix(loss=f"{total / done:.4f}")
        state["losses"].append(total / len(batches))
        state["epoch"] = epoch + 1
        if validate is not None:
            student.eval()
            with torch.no_grad():
                score = float(validate(student))
            state["scores"].append(score)
            if score > state["best"]:
                state.update(best=score, best_epoch=epoch + 1, stale=0,
                             best_state={k: v.detach().clone() for k, v in student.state_dict().items()})
            else:
                state["stale"] += 1
            stopped = config.patience is not None and state["stale"] >= config.patience
        if ckpt is not None and rank == 0 and (state["epoch"] % config.checkpoint_every == 0 or stopped
                                              or state["epoch"] == config.epochs):
            _save_checkpoint(ckpt, student, projections, opt, sched, state, config)
        if stopped:
            break
    if state["best_state"] is not None:
        student.load_state_dict(state["best_state"])
    student.eval()
    return DistillResult(tuple(state["losses"]), tuple(state["scores"]), state["best_epoch"] or state["epoch"],
                         state["epoch"], time.perf_counter() - t0, world, resumed, stopped, config.to_dict())


# --- pieces -------------------------------------------------------------------------------------------------------


def _init_distributed() -> tuple[int, int]:
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("gloo")
        # Closed at exit while the interpreter is whole: a gloo group left to the interpreter's teardown can abort
        # a rank with SIGABRT (pytorch/pytorch#190489). Kept open until then, so later calls reuse it (forming a
        # default group again on torchrun's store can hang).
        atexit.register(_close_group)
    return dist.get_rank(), dist.get_world_size()


def _close_group() -> None:
    import datetime

    import torch.distributed as dist

    if dist.is_initialized():
        # every rank reaches this point before any closes its connections: a rank that tears its group down while a
        # peer's last messages are still in flight is one way gloo aborts at exit. A peer that never comes (it
        # failed) is waited for a minute at most; the group is closed either way.
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=60))
        except RuntimeError:
            pass
        dist.destroy_process_group()


def _global_mean(weighted_sum: Any, n_rows: int, world: int) -> float:
    if world > 1:
        import torch.distributed as dist

        weighted_sum = weighted_sum.clone()
        dist.all_reduce(weighted_sum)
    return float(weighted_sum) / n_rows


def _sync_projection_grads(projections: dict[str, Any], world: int) -> None:
    import torch.distributed as dist

    for m in projections.values():
        for p in m.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= world


def _pick(out: Any, key: str | None) -> Any:
    if key is None:
        return out
    if not isinstance(out, dict) or key not in out:
        have = sorted(out) if isinstance(out, dict) else "a single tensor"
        raise DistillError(f"loss asks for output {key!r}; the model returns {have}")
    return out[key]


def _teacher_batch(teacher: Any, data: DistillData, rows: np.ndarray, xs: tuple[Any, ...]) -> Any:
    import torch

    if data.teacher_outputs is not None:
        ix = torch.from_numpy(rows)
        t = data.teacher_outputs
        return {k: v[ix] for k, v in t.items()} if isinstance(t, dict) else t[ix]
    with torch.no_grad():
        return _forward(teacher, xs)


def fixed_batch(module: Any) -> int | None:
    """The batch size a module accepts and no other, or None: the module of a ``torch.export`` program (a ``.pt2``
    loaded by ``torch.export.load(...).module()``) checks its inputs against the static shapes it was exported
    with (``Guard failed: x.size()[0] == 1``) unless the batch axis was exported as dynamic."""
    inner = getattr(module, "module", module)  # DistributedDataParallel
    graph = getattr(inner, "graph", None)
    if graph is None or not hasattr(graph, "nodes"):
        return None
    find = getattr(graph, "find_nodes", None)
    nodes = find(op="placeholder") if find is not None else [n for n in graph.nodes if n.op == "placeholder"]
    for node in nodes:
        val = node.meta.get("val")
        shape = getattr(val, "shape", None)
        if shape is not None and len(shape) >= 1:
            return shape[0] if isinstance(shape[0], int) else None
    return None


def _forward(module: Any, xs: tuple[Any, ...]) -> Any:
    """``module(*xs)``; for a module that takes only a fixed batch size (:func:`fixed_batch`) the rows go through
    in chunks of that size (the last one padded by repeating its rows, the padding's outputs dropped) and the
    outputs are concatenated, so training batches of any size work with a batch-1 ``.pt2``."""
    import torch

    fixed = fixed_batch(module)
    n = len(xs[0]) if xs and hasattr(xs[0], "shape") and len(xs[0].shape) else None
    if fixed is None or n is None or n == fixed:
        return module(*xs)
    outs = []
    for start in range(0, n, fixed):
        chunk = tuple(x[start:start + fixed] for x in xs)
        k = len(chunk[0])
        if k < fixed:
            chunk = tuple(torch.cat([c] * -(-fixed // k))[:fixed] for c in chunk)
        outs.append(_rows(module(*chunk), k))
    return _concat(outs)


def _rows(out: Any, k: int) -> Any:
    if isinstance(out, dict):
        return {key: _rows(v, k) for key, v in out.items()}
    if isinstance(out, (tuple, list)):
        return type(out)(_rows(v, k) for v in out)
    return out[:k] if hasattr(out, "shape") and len(out.shape) else out


def _concat(outs: list[Any]) -> Any:
    import torch

    first = outs[0]
    if isinstance(first, dict):
        return {key: _concat([o[key] for o in outs]) for key in first}
    if isinstance(first, (tuple, list)):
        return type(first)(_concat([o[i] for o in outs]) for i in range(len(first)))
    if hasattr(first, "shape") and len(first.shape):
        return torch.cat(outs)
    raise DistillError("a model that takes a fixed batch size returned a value without a batch axis; export it "
                       "with a dynamic batch (torch.export.Dim) or give it as a factory 'package.module:function'")


def _batch_loss(model: Any, teacher: Any, data: DistillData, config: DistillConfig, projections: dict[str, Any],
                rows: np.ndarray) -> Any:
    import torch

    xs = data.batch_inputs(rows)
    s_out = _forward(model, xs)
    t_out = _teacher_batch(teacher, data, rows, xs) if any(t.needs_teacher for t in config.losses) else None
    labels = data.labels[torch.from_numpy(rows)] if data.labels is not None else None
    total = None
    for i, term in enumerate(config.losses):
        if term.weight == 0:
            continue
        t = _pick(t_out, term.teacher) if term.needs_teacher else None
        value = term(_pick(s_out, term.student), t, labels, projections.get(str(i)))
        total = term.weight * value if total is None else total + term.weight * value
    if total is None:
        raise DistillError("every loss term has weight 0: nothing to train")
    return total


def _projections(student: Any, teacher: Any, data: DistillData, config: DistillConfig) -> dict[str, Any]:
    """A linear projection student -> teacher width for each hint term (made from one probe batch)."""
    import torch

    hints = [(i, t) for i, t in enumerate(config.losses) if isinstance(t, Hint)]
    if not hints:
        return {}
    rows = np.arange(min(2, data.size))
    xs = data.batch_inputs(rows)
    was = student.training
    student.eval()
    with torch.no_grad():
        s_out = _forward(student, xs)
        t_out = _teacher_batch(teacher, data, rows, xs)
    student.train(was)
    out = {}
    for i, term in hints:
        s_dim, t_dim = _pick(s_out, term.student).shape[-1], _pick(t_out, term.teacher).shape[-1]
        out[str(i)] = torch.nn.Linear(s_dim, t_dim)
    return out


def _lr_lambda(config: DistillConfig, steps: int) -> Callable[[int], float]:
    warm = int(config.warmup * steps)

    def f(step: int) -> float:
        if warm and step < warm:
            return (step + 1) / warm
        if config.schedule == "constant":
            return 1.0
        p = (step - warm) / max(1, steps - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, p)))

    return f


def _save_checkpoint(path: Path, student: Any, projections: dict[str, Any], opt: Any, sched: Any,
                     state: dict[str, Any], config: DistillConfig) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {"student": student.state_dict(), "projections": {k: m.state_dict() for k, m in projections.items()},
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "state": state,
            "config": json.dumps(config.to_dict(), sort_keys=True), "torch_rng": torch.get_rng_state()}
    fd, tmp = tempfile.mkstemp(prefix=".distill-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(blob, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _load_checkpoint(path: Path, student: Any, projections: dict[str, Any], opt: Any, sched: Any,
                     state: dict[str, Any], config: DistillConfig) -> int:
    import torch

    try:
        blob = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same problem for the user
        raise DistillError(f"{path}: not a readable distillation checkpoint ({exc}); delete it to start over") \
            from None
    if blob.get("config") != json.dumps(config.to_dict(), sort_keys=True):
        raise DistillError(f"{path} was written by a run with another configuration; resume with the same config "
                           "or delete the checkpoint")
    student.load_state_dict(blob["student"])
    for k, m in projections.items():
        m.load_state_dict(blob["projections"][k])
    opt.load_state_dict(blob["optimizer"])
    sched.load_state_dict(blob["scheduler"])
    state.update(blob["state"])
    torch.set_rng_state(blob["torch_rng"])
    return int(state["epoch"])


__all__ = ["DistillConfig", "DistillData", "DistillError", "DistillResult", "distill", "fixed_batch"]
