from xmodal.evaluation.classification import (
    ClassificationMetric,
    accuracy,
    cohen_kappa,
    confusion_matrix,
    macro_f1,
)

__all__ = ["ClassificationMetric", "accuracy", "cohen_kappa", "confusion_matrix", "macro_f1"]
