"""Process reward models: one interface (a score in [0, 1] per step), three formats loaded with transformers,
the aggregations, a reward for GRPO and the filter, Monte Carlo step labels from the policy's own rollouts
(Math-Shepherd), and training a token-classification PRM on them."""

from .base import AGGREGATIONS, ProcessRewardModel, aggregate
from .registry import PRMS, detect_format, load_prm

__all__ = ["AGGREGATIONS", "PRMS", "ProcessRewardModel", "aggregate", "detect_format", "load_prm"]
