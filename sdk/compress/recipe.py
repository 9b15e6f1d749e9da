"""A compression ``Recipe``: prune → distil → quantize, one typed stage each, loaded from TOML or JSON.

```toml
name = "small-and-int8"
[prune]                      # optional: kind = "structured" | "magnitude"
kind = "structured"
ratio = 0.5
[distill]                    # optional: edgecart.compress.distill from the unpruned model (DistillConfig)
epochs = 2
losses = [{ name = "mse", weight = 1.0 }]
[quantize]                   # optional: int8 recipes tried in order behind a quality gate, per format
recipes = ["static-int8-per-channel", { kind = "static_int8", per_channel = false }]
gate_metric = "cosine"
max_drop = 0.01
rescue = true                # when every recipe misses the gate: worst layers in float, then QAT
keep_float = 2
[quantize.qat]               # optional: the QAT fallback's settings (edgecart.exporters.recipes.QAT)
steps = 160                  # Adam steps on mini-batches of training inputs, cosine-decayed lr
batch_size = 16
lr = 5e-5
eval_every = 20              # the step is picked on validation inputs (or a held-out share of the calibration)
observer_steps = 20          # int8 ranges frozen after this step (default: a third of the steps)
ema = 0.0                    # > 0: keep an exponential moving average of the weights
holdout = 0.25               # share of the calibration inputs held out when no training inputs are given
```

Unknown stage or option names raise :class:`~edgecart.config.ConfigError` listing the known ones; recipe names go
through the recipe registry (misspellings list the known names). ``Recipe.to_dict()`` is what bundles record.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecart.config import ConfigError, from_dict, load_file, to_dict
from edgecart.exporters.recipes import QAT, QuantRecipe, recipe_to_dict, resolve_recipe
from edgecart.runtime.errors import UnknownNameError
from edgecart.runtime.registry import Registry

from .pruning import PruneConfig, prune_config_from_dict, prune_config_to_dict

#: Runners of stages whose code lives elsewhere, by name: fn(student, config, **context) -> model. The distillation
#: trainer registers "distill" here; a recipe that names an unregistered runner fails listing the registered ones.
STAGE_RUNNERS: Registry[Callable[..., Any]] = Registry("compression stage runner")


def register_stage(name: str, runner: Callable[..., Any]) -> Callable[..., Any]:
    """Register ``runner(student, config: DistillStage, **context) -> model`` under ``name``."""
    return STAGE_RUNNERS.register(name, runner)


@dataclass(frozen=True)
class DistillStage:
    """Recover quality after pruning by distillation from the unpruned model (the teacher), run by
    ``STAGE_RUNNERS[runner]``. ``config``: the runner's settings; for the built-in ``distill`` runner a
    :class:`~edgecart.compress.distill.DistillConfig` table (losses, epochs, lr, ...), checked when the recipe loads."""

    runner: str = "distill"
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.runner, str) or not self.runner:
            raise ConfigError("distill.runner must name a registered runner")
        if not isinstance(self.config, dict):
            raise ConfigError("distill.config must be a table")
        if self.runner == "distill":
            _distill_config(self.config)  # fail at load, not after pruning

    @classmethod
    def from_table(cls, data: dict[str, Any]) -> DistillStage:
        """``[distill]`` in a recipe file: ``runner`` (optional) and the runner's settings side by side."""
        if not isinstance(data, dict):
            raise ConfigError("[distill] must be a table")
        body = dict(data)
        return cls(runner=body.pop("runner", "distill"), config=body)

    def to_dict(self) -> dict[str, Any]:
        return {"runner": self.runner, **self.config}


def _distill_config(table: dict[str, Any]) -> Any:
    from .distill import DistillConfig

    try:
        return DistillConfig.from_dict(table)
    except (ConfigError, UnknownNameError):
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"distill: {exc}") from None


def _run_distill(student: Any, stage: DistillStage, *, teacher: Any = None, data: Any = None,
                 **kwargs: Any) -> Any:
    """The built-in runner: :func:`edgecart.compress.distill` from ``teacher`` (default: the unpruned model) on
    ``data`` (a ``DistillData``)."""
    from .distill import distill

    if data is None:
        raise ConfigError("the recipe distils: pass data=DistillData(...) (training inputs) to Recipe.apply")
    distill(student, teacher, data, _distill_config(stage.config), **kwargs)
    return student


register_stage("distill", _run_distill)


def _check_type(where: str, value: Any, types: tuple[type, ...], want: str) -> None:
    """A ConfigError naming ``where`` unless ``value`` is one of ``types`` (a TOML boolean is not a number)."""
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ConfigError(f"{where} must be {want}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True)
class QuantizeStage:
    """int8 recipes tried in order behind a quality gate (``gate_metric`` may drop by at most ``max_drop``).
    Formats skip the recipes they cannot apply. ``rescue``: when all miss, keep the ``keep_float`` worst layers
    (per-layer diagnosis) in float, then try ``qat``. ``calibration``: how many calibration inputs to use."""

    recipes: tuple[QuantRecipe, ...] = ()
    gate_metric: str = "cosine"
    max_drop: float = 0.01
    rescue: bool = True
    keep_float: int = 2
    qat: QAT | None = QAT()
    calibration: int = 64

    def __post_init__(self) -> None:
        _check_type("quantize.gate_metric", self.gate_metric, (str,), "a metric name, e.g. \"cosine\"")
        _check_type("quantize.max_drop", self.max_drop, (int, float), "a number, e.g. 0.01")
        _check_type("quantize.rescue", self.rescue, (bool,), "true or false")
        _check_type("quantize.keep_float", self.keep_float, (int,), "a whole number, e.g. 2")
        _check_type("quantize.calibration", self.calibration, (int,), "a whole number of inputs, e.g. 64")
        if isinstance(self.recipes, (str, dict)) or not isinstance(self.recipes, (list, tuple)):
            raise ConfigError(f"quantize.recipes must be a list, e.g. recipes = [\"static-int8-per-channel\"], "
                              f"got {type(self.recipes).__name__} {self.recipes!r}")
        object.__setattr__(self, "recipes", tuple(resolve_recipe(r) for r in self.recipes))
        if isinstance(self.qat, dict):
            object.__setattr__(self, "qat", from_dict(QAT, self.qat, "quantize.qat"))
        if not self.gate_metric:
            raise ConfigError("quantize.gate_metric must name a metric")
        if self.max_drop < 0 or self.keep_float < 0 or self.calibration < 1:
            raise ConfigError("quantize: max_drop >= 0, keep_float >= 0, calibration >= 1")

    def to_dict(self) -> dict[str, Any]:
        d = to_dict(self)
        d["recipes"] = [recipe_to_dict(r) for r in self.recipes]
        return d


@dataclass(frozen=True)
class Recipe:
    """The stages to apply, in order: ``prune`` → ``distill`` → ``quantize`` (each optional)."""

    name: str = "recipe"
    prune: PruneConfig | None = None
    distill: DistillStage | None = None
    quantize: QuantizeStage | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("recipe.name must not be empty")

    @property
    def stages(self) -> list[str]:
        return [s for s in ("prune", "distill", "quantize") if getattr(self, s) is not None]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name,
                "prune": prune_config_to_dict(self.prune) if self.prune else None,
                "distill": self.distill.to_dict() if self.distill else None,
                "quantize": self.quantize.to_dict() if self.quantize else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        if not isinstance(data, dict):
            raise ConfigError("a recipe is a table")
        known = ("name", "prune", "distill", "quantize")
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(f"recipe: unknown stage(s) {unknown}; known: {list(known)}")
        quant = data.get("quantize")
        return cls(
            name=data.get("name", "recipe"),
            prune=prune_config_from_dict(data["prune"]) if data.get("prune") is not None else None,
            distill=DistillStage.from_table(data["distill"]) if data.get("distill") is not None else None,
            quantize=from_dict(QuantizeStage, quant, "quantize") if quant is not None else None,
        )

    def check_distill_learns(self, model: Any = None, *, cli: bool = False, **context: Any) -> None:
        """Refuse (ConfigError) a built-in ``[distill]`` stage that has nothing to learn: without a ``[prune]``
        stage the student is the model itself and its default teacher a frozen copy of it, so every teacher loss is
        0 from the first step (``mse``, ``relational``...) or only pulls the student away from the model (``hint``,
        through its fresh projection). It can learn from a ``teacher=`` other than ``model``, cached
        ``DistillData(teacher_outputs=)``, or labels (``DistillData(labels=)``) with a label loss. ``cli``: word
        the fix for the command line, which passes neither a teacher nor labels."""
        if self.distill is None or self.prune is not None or self.distill.runner != "distill":
            return
        teacher, data = context.get("teacher"), context.get("data")
        if teacher is not None and teacher is not model:
            return
        if getattr(data, "teacher_outputs", None) is not None:
            return
        from .losses import LOSSES

        label_losses = [n for n in LOSSES.names() if not LOSSES[n].needs_teacher]
        terms = _distill_config(self.distill.config).losses
        if getattr(data, "labels", None) is not None and any(not t.needs_teacher and t.weight > 0 for t in terms):
            return
        why = ("the recipe has a [distill] stage but no [prune] stage: the student would be the model itself and "
               "start identical to its teacher (a frozen copy of it), so there is nothing to learn (a teacher loss "
               "is 0 from the first step; 'hint' only drifts away from the model). ")
        if cli:
            raise ConfigError(why + "Add a [prune] stage (distillation then trains the smaller model from the "
                              "unpruned one; a .pt2 cannot be pruned: give the model as a factory "
                              "'package.module:function' with its weights), or drop the [distill] stage; to "
                              "distil from another teacher or from labels, call edgecart.compress.distill from "
                              "Python")
        raise ConfigError(why + "Add a [prune] stage (a smaller student), or pass Recipe.apply(..., teacher=<a "
                          "different model>), or labelled data DistillData(labels=...) with a label loss "
                          f"({', '.join(label_losses)})")

    def apply(self, model: Any, example_inputs: tuple[Any, ...], *, progress: Callable[[str], None] | None = None,
              **context: Any) -> tuple[Any, dict[str, Any]]:
        """Run the float stages (prune, distil) on ``model``; returns (compressed float model, record). The quantize
        stage runs at export (:func:`edgecart.compress.export_compressed`), where each format applies its recipes.
        ``context`` goes to the distillation runner (``data=``, optionally ``teacher=``: by default the model as it
        was before pruning). A distil stage without a prune stage needs a ``teacher=`` or labels to learn from
        (:meth:`check_distill_learns`); it is refused before any stage runs otherwise."""
        from .pruning import prune, sparsity

        self.check_distill_learns(model, **context)
        say = progress or (lambda _m: None)
        record: dict[str, Any] = {"recipe": self.to_dict(), "stages": []}
        before = sparsity(model)
        original = model
        if self.prune is not None:
            say(f"prune: {self.prune.kind}")
            model = prune(model, self.prune, example_inputs)
            record["stages"].append({"stage": "prune", "before": before, "after": sparsity(model)})
        if self.distill is not None:
            runner = STAGE_RUNNERS[self.distill.runner]
            say(f"distill: {self.distill.runner}")
            # without a prune stage the student is the model itself: the teacher is a frozen copy, not the same object
            # (which would move with every training step, leaving the student to learn from itself)
            context.setdefault("teacher", (copy.deepcopy(original) if model is original else original).eval())
            model = runner(model, self.distill, **context)
            record["stages"].append({"stage": "distill", "runner": self.distill.runner})
        return model, record


def load_recipe(path: str | Path) -> Recipe:
    """A :class:`Recipe` from a ``.toml`` or ``.json`` file."""
    data = load_file(path)
    if "recipe" in data and set(data) == {"recipe"}:
        data = data["recipe"]
    return Recipe.from_dict(data)


__all__ = ["STAGE_RUNNERS", "DistillStage", "QuantizeStage", "Recipe", "load_recipe", "register_stage"]
