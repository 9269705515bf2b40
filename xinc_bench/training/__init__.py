"""Lightning training of INRs and fidelity measurement."""

from .fit import FitResult, fidelity, fit, render
from .module import INRFitModule

__all__ = ["FitResult", "INRFitModule", "fidelity", "fit", "render"]
