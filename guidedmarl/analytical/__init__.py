"""Analytical models and the differentiable convex layers that compute reference states."""

from guidedmarl.analytical.model import AnalyticalModel, SparseInfluence
from guidedmarl.errors import GuidanceError

__all__ = ["AnalyticalModel", "GuidanceError", "SparseInfluence"]
