"""DESIRE: `config.py` (options), `merge.py` (coefficients and SVD fold), `method.py` (the hooks)."""

from citkit.cil.methods.desire.config import CalibrationConfig, DESIREConfig
from citkit.cil.methods.desire.method import DESIRE

__all__ = ["DESIRE", "CalibrationConfig", "DESIREConfig"]
