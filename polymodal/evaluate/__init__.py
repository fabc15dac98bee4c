from polymodal.evaluate.metrics import classification_metrics, regression_metrics
from polymodal.evaluate.subsets import modality_subsets

__all__ = ["classification_metrics", "regression_metrics", "modality_subsets"]
