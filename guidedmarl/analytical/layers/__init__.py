"""Differentiable convex layers that compute reference states.

The separable allocation program (see :mod:`guidedmarl.analytical.layers.allocation`) is
solved by two interchangeable backends, selectable by name through
:func:`make_allocation_layer`:

* ``"waterfill"``: :class:`WaterFillingLayer`, exact structured solver with closed-form
  gradients; the one to use in training.
* ``"cvxpylayers"``: :class:`CvxpyAllocationLayer`, generic conic solver (cvxpylayers,
  diffcp, SCS); a slow independent reference. cvxpy is imported only when it first solves.
"""

from guidedmarl.analytical.layers.allocation import (
    ALLOCATION_LAYERS,
    AllocationLayer,
    InfeasibleProgramError,
    make_allocation_layer,
    register_allocation_layer,
)
from guidedmarl.analytical.layers.cvxpy_layer import AllocationSolverError, CvxpyAllocationLayer
from guidedmarl.analytical.layers.waterfill import WaterFillingLayer

__all__ = [
    "ALLOCATION_LAYERS",
    "AllocationLayer",
    "AllocationSolverError",
    "CvxpyAllocationLayer",
    "InfeasibleProgramError",
    "WaterFillingLayer",
    "make_allocation_layer",
    "register_allocation_layer",
]
