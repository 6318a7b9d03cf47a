from xmodal.evaluation.classification import (
    ClassificationMetric,
    accuracy,
    cohen_kappa,
    confusion_matrix,
    macro_f1,
)
from xmodal.evaluation.detection import NuScenesMetric, evaluate_nuscenes
from xmodal.evaluation.retrieval import (
    RetrievalMetric,
    build_index,
    dense_recall_at_k,
    image_text_recalls,
    l2_normalise,
    recall_at_k,
    recall_at_k_pairs,
    search,
)
from xmodal.evaluation.routing import MaskKLMetric, RouterUsageMetric, plot_router_usage
from xmodal.evaluation.segmentation import SegmentationMetric

__all__ = [
    "ClassificationMetric",
    "MaskKLMetric",
    "NuScenesMetric",
    "RetrievalMetric",
    "RouterUsageMetric",
    "SegmentationMetric",
    "accuracy",
    "build_index",
    "cohen_kappa",
    "confusion_matrix",
    "dense_recall_at_k",
    "evaluate_nuscenes",
    "image_text_recalls",
    "l2_normalise",
    "macro_f1",
    "plot_router_usage",
    "recall_at_k",
    "recall_at_k_pairs",
    "search",
]
