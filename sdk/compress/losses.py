"""Distillation losses as small composable pieces, each a frozen config registered by name.

A term compares the student's output with the teacher's (or with the labels) on one batch and returns a scalar.
``weight`` scales it; ``student`` / ``teacher`` pick a named output when a model returns a dict (None: the whole
output). Terms::

    cosine        1 - cos(s, t), averaged                          (embeddings)
    mse           mean squared error                               (embeddings, hidden states)
    relational    MSE between the batch's cosine-similarity matrices of s and of t (structure of the space)
    kl            T^2 * KL(softmax(t/T) || softmax(s/T))           (logits, Hinton et al. 2015)
    ranking       cross-entropy of s against the teacher's top-K as soft positives, softmax(t_topK / T)
                  (ranking distillation over a full catalog: Tang & Wang 2018 use the top-K as weighted positives)
    label         cross-entropy of s against the labels (no teacher)
    hint          MSE between a learned linear projection of s and t (FitNets, Romero et al. 2015)

``loss_from_dict({"name": "kl", "temperature": 4})`` builds one from JSON; an unknown name or option raises an
error listing the known ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from edgecart.config import ConfigError
from edgecart.runtime.errors import UnknownNameError
from edgecart.runtime.registry import Registry


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_positive(term: Any, option: str) -> None:
    """A ConfigError naming the term unless its ``option`` is a number > 0."""
    v = getattr(term, option)
    if not _is_number(v) or not v > 0:
        raise ConfigError(f"{term.name}: {option} must be a number > 0, got {v!r}")


@dataclass(frozen=True)
class LossTerm:
    """Base of every term: its weight and which outputs it reads."""

    weight: float = 1.0
    student: str | None = None
    teacher: str | None = None
    name: ClassVar[str] = ""
    needs_teacher: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not _is_number(self.weight) or self.weight < 0:
            raise ConfigError(f"{self.name}: weight must be a number >= 0, got {self.weight!r}")

    def __call__(self, s: Any, t: Any, labels: Any = None, projection: Any = None) -> Any:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


LOSSES: Registry[type[LossTerm]] = Registry("distillation loss")


def _register(cls: type[LossTerm]) -> type[LossTerm]:
    LOSSES.register(cls.name, cls)
    return cls


def _flat(x: Any) -> Any:
    return x.reshape(-1, x.shape[-1]) if x.dim() > 2 else x


@_register
@dataclass(frozen=True)
class Cosine(LossTerm):
    name: ClassVar[str] = "cosine"

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        return (1 - F.cosine_similarity(_flat(s), _flat(t), dim=-1)).mean()


@_register
@dataclass(frozen=True)
class MSE(LossTerm):
    name: ClassVar[str] = "mse"

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        return F.mse_loss(s, t)


@_register
@dataclass(frozen=True)
class Relational(LossTerm):
    name: ClassVar[str] = "relational"

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        s, t = F.normalize(_flat(s), dim=-1), F.normalize(_flat(t), dim=-1)
        return F.mse_loss(s @ s.T, t @ t.T)


@_register
@dataclass(frozen=True)
class KLDivergence(LossTerm):
    temperature: float = 2.0
    name: ClassVar[str] = "kl"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, "temperature")

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        tt = self.temperature
        return F.kl_div(F.log_softmax(_flat(s) / tt, -1), F.log_softmax(_flat(t) / tt, -1), reduction="batchmean",
                        log_target=True) * tt * tt


def _check_top_k(term: Any) -> None:
    """A ConfigError naming the term unless its ``top_k`` is an integer >= 1."""
    if not isinstance(term.top_k, int) or isinstance(term.top_k, bool) or term.top_k < 1:
        raise ConfigError(f"{term.name}: top_k must be an integer >= 1, got {term.top_k!r}")


def _check_top_k_temperature(term: Any) -> None:
    """The shared checks of the top-K ranking terms, naming the term in the message."""
    _check_top_k(term)
    _check_positive(term, "temperature")


@_register
@dataclass(frozen=True)
class RankingKD(LossTerm):
    top_k: int = 50
    temperature: float = 1.0
    exclude_first: bool = False
    name: ClassVar[str] = "ranking"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_top_k_temperature(self)

    def __call__(self, s, t, labels=None, projection=None):
        import torch
        from torch.nn import functional as F  # noqa: N812

        s, t = _flat(s), _flat(t)
        if self.exclude_first:  # e.g. a padding column that is never a valid answer
            t = t.clone()
            t[:, 0] = -torch.inf
        top, idx = torch.topk(t, min(self.top_k, t.shape[-1]), dim=-1)
        w = torch.softmax(top / self.temperature, dim=-1)
        return -(F.log_softmax(s, -1).gather(1, idx) * w).sum(1).mean()


@_register
@dataclass(frozen=True)
class LabelCE(LossTerm):
    label_smoothing: float = 0.0
    name: ClassVar[str] = "label"
    needs_teacher: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_number(self.label_smoothing) or not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label: label_smoothing must lie in [0, 1), got {self.label_smoothing!r}")

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        if labels is None:
            raise ValueError("the 'label' loss needs labels: pass DistillData(labels=...)")
        return F.cross_entropy(_flat(s), labels.reshape(-1), label_smoothing=self.label_smoothing)


@_register
@dataclass(frozen=True)
class Hint(LossTerm):
    name: ClassVar[str] = "hint"

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        if projection is None:
            raise ValueError("the 'hint' loss needs its projection (the trainer makes it)")
        return F.mse_loss(projection(s), t)


def loss_from_dict(data: Any, where: str | None = None) -> LossTerm:
    """Build a loss term from ``{"name": ..., option: value, ...}`` (allowlist of the term's fields, value types
    checked by :func:`edgecart.config.from_dict`; ``where`` names the term in errors)."""
    from edgecart.config import from_dict

    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ConfigError(f"a loss term is an object with a 'name' (one of {LOSSES.names()}), got {data!r}")
    cls = LOSSES[data["name"]]
    fields = {f.name for f in dataclasses.fields(cls)}
    opts = {k: v for k, v in data.items() if k != "name"}
    unknown = sorted(set(opts) - fields)
    if unknown:
        raise UnknownNameError(f"unknown option(s) {unknown} for loss {cls.name!r}; known: {sorted(fields)}")
    return from_dict(cls, opts, where or f"loss {cls.name!r}")


__all__ = ["LOSSES", "Cosine", "Hint", "KLDivergence", "LabelCE", "LossTerm", "MSE", "RankingKD", "Relational",
           "loss_from_dict"]


@_register
@dataclass(frozen=True)
class MaskedLabelCE(LossTerm):
    """Cross-entropy against the labels over the rows that have one (``label >= 0``; e.g. -100 marks an unlabelled
    row); 0 when the batch has none. ``column`` picks one column of (N, K) labels (several label sets trained at
    once); ``logit_scale`` multiplies the logits first (a head on unit-norm embeddings needs a larger range)."""

    column: int | None = None
    logit_scale: float = 1.0
    name: ClassVar[str] = "masked_label"
    needs_teacher: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.column is not None and (not isinstance(self.column, int) or isinstance(self.column, bool)
                                        or self.column < 0):
            raise ConfigError(f"masked_label: column must be an integer >= 0 when given, got {self.column!r}")
        _check_positive(self, "logit_scale")

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        if labels is None:
            raise ValueError("the 'masked_label' loss needs labels: pass DistillData(labels=...)")
        y = labels[:, self.column] if self.column is not None else labels.reshape(-1)
        logits = _flat(s) * self.logit_scale
        keep = (y >= 0).to(logits.dtype)
        per = F.cross_entropy(logits, y.clamp(min=0), reduction="none")
        return (per * keep).sum() / keep.sum().clamp(min=1.0)


__all__ += ["MaskedLabelCE"]  # noqa: PLE0605


# --- sequence outputs with unlabelled positions (added for the recommendations pipeline) ---------------------------


def _labelled(x: Any, labels: Any, ignore_index: int) -> Any:
    """The rows of ``x`` whose label is not ``ignore_index``: ``x`` holds either every position ([..., C], one row
    per label) or, already selected by the model, only the labelled ones ([M, C] in row-major order of the labels,
    which saves computing outputs that no loss reads)."""
    if labels is None:
        raise ValueError("a masked loss needs labels (DistillData(labels=...)) to know which positions count")
    keep = labels.reshape(-1) != ignore_index
    flat = _flat(x)
    if flat.shape[0] == keep.numel():
        return flat[keep]
    if x.dim() == 2 and flat.shape[0] == int(keep.sum()):
        return flat
    raise ValueError(f"output with {flat.shape[0]} rows matches neither the {keep.numel()} labels nor the "
                     f"{int(keep.sum())} labelled positions")


@_register
@dataclass(frozen=True)
class SequenceLabelCE(LabelCE):
    """Cross-entropy against the labels at every position whose label is not ``ignore_index`` (e.g. the padding of
    left-padded sequences), averaged over those positions: ``s`` [..., C] logits at every position, or [M, C] at the
    M labelled ones only; labels [...]."""

    ignore_index: int = 0
    name: ClassVar[str] = "sequence_label"

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        if labels is None:
            raise ValueError("the 'sequence_label' loss needs labels: pass DistillData(labels=...)")
        y = labels.reshape(-1)
        return F.cross_entropy(_labelled(s, labels, self.ignore_index), y[y != self.ignore_index],
                               label_smoothing=self.label_smoothing)


@_register
@dataclass(frozen=True)
class MaskedRankingKD(LossTerm):
    """Ranking distillation at the labelled positions of sequence outputs, over the full catalogue:
    ``T^2 * CE(softmax(s / T), soft positives)`` where the soft positives are the teacher's top ``top_k`` columns
    weighted by its softmax over them at ``T`` (column ``ignore_index`` — padding — is never a positive).

    ``s``: the student's scores at every position [..., C] or at the labelled ones only [M, C]. ``t``: the
    teacher's scores (same two forms) or, computed once ahead of training, a dict with ``index`` [..., K] (its top-K
    columns) and ``weight`` [..., K] (their softmax at this temperature; rows sum to 1)."""

    top_k: int = 50
    temperature: float = 1.0
    ignore_index: int = 0
    name: ClassVar[str] = "masked_ranking"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_top_k_temperature(self)

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        idx, w = _soft_positives(self, t, labels, self.temperature)
        s = _labelled(s, labels, self.ignore_index)
        logp = F.log_softmax(s / self.temperature if self.temperature != 1 else s, dim=-1)
        return -(logp.gather(1, idx) * w).sum(1).mean() * self.temperature ** 2


def _soft_positives(term: Any, t: Any, labels: Any, temperature: float) -> tuple[Any, Any]:
    """The teacher's soft positives at the labelled positions, (index [M, K], weight [M, K]): from its scores (the
    top ``term.top_k`` columns, ``term.ignore_index`` excluded, weighted by their softmax at ``temperature``) or
    from a dict computed once ahead of training (``index``, ``weight``)."""
    import torch

    if isinstance(t, dict):
        if "index" not in t or "weight" not in t:
            raise ValueError(f"{term.name}: precomputed teacher top-K needs 'index' and 'weight', got {sorted(t)}")
        return (_labelled(t["index"], labels, term.ignore_index).long(),
                _labelled(t["weight"], labels, term.ignore_index).float())
    tt = _labelled(t, labels, term.ignore_index).float().clone()
    excluded = 0 <= term.ignore_index < tt.shape[-1]
    if excluded:
        tt[:, term.ignore_index] = -torch.inf
    top, idx = torch.topk(tt, min(term.top_k, tt.shape[-1] - int(excluded)), dim=-1)
    return idx, torch.softmax(top / temperature, dim=-1)


@_register
@dataclass(frozen=True)
class MaskedLabelRankingKD(LossTerm):
    """The label cross-entropy and the ranking distillation of :class:`MaskedRankingKD` at temperature 1, over one
    log-softmax of the student's scores: ``(1 - alpha) * CE(labels) + alpha * CE(soft positives)`` at the labelled
    positions. Equal to ``SequenceLabelCE(weight=1 - alpha)`` plus ``MaskedRankingKD(weight=alpha, temperature=1)``
    up to rounding; a small recommender's training step with it costs about 0.62 of one with the two (the full
    softmax, forward and backward, is most of such a step; ``edgecart.benchmarks.distill_step``). ``t`` as for
    :class:`MaskedRankingKD`."""

    alpha: float = 0.5
    top_k: int = 50
    ignore_index: int = 0
    name: ClassVar[str] = "masked_label_ranking"

    def __post_init__(self) -> None:
        super().__post_init__()
        if not _is_number(self.alpha) or not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"{self.name}: alpha must be a number in [0, 1], got {self.alpha!r}")
        _check_top_k(self)

    def __call__(self, s, t, labels=None, projection=None):
        import torch
        from torch.nn import functional as F  # noqa: N812

        if labels is None:
            raise ValueError(f"the {self.name!r} loss needs labels: pass DistillData(labels=...)")
        idx, w = _soft_positives(self, t, labels, 1.0)
        y = labels.reshape(-1)
        y = y[y != self.ignore_index].long()
        logp = F.log_softmax(_labelled(s, labels, self.ignore_index), dim=-1)
        cols = torch.cat([y[:, None], idx], dim=1)
        weights = torch.cat([torch.full_like(w[:, :1], 1.0 - self.alpha), w * self.alpha], dim=1)
        return -(logp.gather(1, cols) * weights).sum(1).mean()


@_register
@dataclass(frozen=True)
class MaskedHint(Hint):
    """The hint loss (MSE between a learned projection of the student's hidden state and the teacher's) at the
    labelled positions only; ``s`` [..., d_student], ``t`` [..., d_teacher] (any float dtype), each at every
    position or at the labelled ones only."""

    ignore_index: int = 0
    name: ClassVar[str] = "masked_hint"

    def __call__(self, s, t, labels=None, projection=None):
        from torch.nn import functional as F  # noqa: N812

        if projection is None:
            raise ValueError("the 'masked_hint' loss needs its projection (the trainer makes it)")
        s, t = _labelled(s, labels, self.ignore_index), _labelled(t, labels, self.ignore_index)
        return F.mse_loss(projection(s), t.to(s.dtype))


__all__ += ["MaskedHint", "MaskedLabelRankingKD", "MaskedRankingKD", "SequenceLabelCE"]  # noqa: PLE0605


@_register
@dataclass(frozen=True)
class InfoNCE(LossTerm):
    """Contrastive distillation: each student row must pick its own teacher row among the batch's teacher rows,
    cross-entropy of ``cos(s_i, t_j) / temperature`` with target ``j = i`` (InfoNCE, van den Oord et al. 2018; as a
    distillation term, CRD, Tian et al. 2020, with in-batch negatives). Rows are L2-normalised first."""

    temperature: float = 0.1
    name: ClassVar[str] = "infonce"

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive(self, "temperature")

    def __call__(self, s, t, labels=None, projection=None):
        import torch
        from torch.nn import functional as F  # noqa: N812

        s, t = F.normalize(_flat(s), dim=-1), F.normalize(_flat(t), dim=-1)
        logits = s @ t.T / self.temperature
        return F.cross_entropy(logits, torch.arange(len(s), device=s.device))


__all__ += ["InfoNCE"]  # noqa: PLE0605
