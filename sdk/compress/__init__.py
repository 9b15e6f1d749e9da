"""edgecart.compress — make models small: prune, distil, quantize, as typed configs and recipes."""

from .distill import DistillConfig, DistillData, DistillError, DistillResult, distill
from .losses import LOSSES, MSE, Cosine, Hint, KLDivergence, LabelCE, LossTerm, RankingKD, Relational, loss_from_dict

__all__ = ["LOSSES", "Cosine", "DistillConfig", "DistillData", "DistillError", "DistillResult", "Hint",
           "KLDivergence", "LabelCE", "LossTerm", "MSE", "RankingKD", "Relational", "distill", "loss_from_dict"]
