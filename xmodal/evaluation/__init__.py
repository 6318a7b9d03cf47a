from xmodal.evaluation.classification import (
    ClassificationMetric,
    accuracy,
    cohen_kappa,
    confusion_matrix,
    macro_f1,
)
from xmodal.evaluation.routing import MaskKLMetric, RouterUsageMetric, plot_router_usage

__all__ = [
    "ClassificationMetric",
    "MaskKLMetric",
    "RouterUsageMetric",
    "accuracy",
    "cohen_kappa",
    "confusion_matrix",
    "macro_f1",
    "plot_router_usage",
]
