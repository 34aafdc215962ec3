"""Analytical models and the differentiable convex layers that compute reference states."""

from guidedmarl.analytical.model import AnalyticalModel, GuidanceError, SparseInfluence

__all__ = ["AnalyticalModel", "GuidanceError", "SparseInfluence"]
