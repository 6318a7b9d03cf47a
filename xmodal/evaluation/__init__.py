from xmodal.evaluation.classification import (
    ClassificationMetric,
    accuracy,
    cohen_kappa,
    confusion_matrix,
    macro_f1,
)
from xmodal.evaluation.routing import MaskKLMetric, RouterUsageMetric, plot_router_usage
from xmodal.evaluation.segmentation import SegmentationMetric

__all__ = [
    "ClassificationMetric",
    "MaskKLMetric",
    "RouterUsageMetric",
    "SegmentationMetric",
    "accuracy",
    "cohen_kappa",
    "confusion_matrix",
    "macro_f1",
    "plot_router_usage",
]
