from .metrics import classification_metrics, regression_metrics
from .subsets import modality_subsets

__all__ = ["classification_metrics", "regression_metrics", "modality_subsets"]
