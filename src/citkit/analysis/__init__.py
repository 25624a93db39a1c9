"""Model analyses: centred kernel alignment (CKA) between models, layer by layer."""

from citkit.analysis.cka import linear_cka, rbf_cka

__all__ = ["linear_cka", "rbf_cka"]
