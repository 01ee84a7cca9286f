"""Optimizers by name and the chain builder."""

from gradlab.optim.chain import build_optimizer
from gradlab.optim.registry import OPTIMIZERS

__all__ = ["OPTIMIZERS", "build_optimizer"]
