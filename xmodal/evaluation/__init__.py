from xmodal.evaluation.classification import (
    ClassificationMetric,
    accuracy,
    cohen_kappa,
    confusion_matrix,
    macro_f1,
)
from xmodal.evaluation.routing import MaskKLMetric, RouterUsageMetric, plot_router_usage

__all__ = ["MaskKLMetric", "RouterUsageMetric", "plot_router_usage", "ClassificationMetric", "accuracy", "cohen_kappa", "confusion_matrix", "macro_f1"]
