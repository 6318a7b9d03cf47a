import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

from xmodal.evaluation import ClassificationMetric, accuracy, cohen_kappa, confusion_matrix, macro_f1


def test_hand_computed_confusion():
    pred, label = np.array([0, 1, 1, 2, 2, 2]), np.array([0, 1, 2, 2, 2, 0])
    cm = confusion_matrix(pred, label, 3)
    assert cm.tolist() == [[1, 0, 1], [0, 1, 0], [0, 1, 2]]
    assert accuracy(cm) == pytest.approx(4 / 6)
    # F1 per class: c0 = 2·1/(2+1) = 2/3, c1 = 2·1/(1+2) = 2/3, c2 = 2·2/(3+3) = 2/3
    assert macro_f1(cm) == pytest.approx(2 / 3)
    # p_o = 4/6; true counts (2, 1, 3), predicted counts (1, 2, 3): p_e = (2·1 + 1·2 + 3·3)/36 = 13/36
    assert cohen_kappa(cm) == pytest.approx(11 / 23)


@pytest.mark.parametrize("seed", range(5))
def test_matches_scikit_learn(seed):
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 6, 200)
    pred = np.where(rng.random(200) < 0.6, label, rng.integers(0, 6, 200))
    cm = confusion_matrix(pred, label, 6)
    assert accuracy(cm) == pytest.approx(accuracy_score(label, pred))
    assert macro_f1(cm) == pytest.approx(f1_score(label, pred, average="macro"))
    assert cohen_kappa(cm) == pytest.approx(cohen_kappa_score(label, pred))


def test_metric_class_over_batches():
    metric = ClassificationMetric(num_classes=3)
    logits = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [5.0, 0, 0]])
    labels = [0, 1, 1, 0]
    metric.process({}, [{"logits": logits[i], "label": labels[i], "index": i} for i in range(2)])
    metric.process({}, [{"logits": logits[i], "label": labels[i], "index": i} for i in range(2, 4)])
    result = metric.compute_metrics(metric.results)
    assert result["accuracy"] == pytest.approx(0.75)
    assert set(result) == {"accuracy", "macro_f1", "kappa"}


def test_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="labels must lie in"):
        confusion_matrix(np.array([0]), np.array([3]), 3)


def test_router_usage_per_class_by_hand(tmp_path):
    from xmodal.evaluation import MaskKLMetric, RouterUsageMetric, plot_router_usage

    metric = RouterUsageMetric(expert_names=["a", "b", "c"])
    metric.dataset_meta = {"classes": ["x", "y"]}
    samples = [{"label": 0, "route": [0]}, {"label": 0, "route": [2]}, {"label": 1, "route": [2]},
               {"label": 0, "route": [0]}]
    metric.process(None, samples)
    result = metric.compute_metrics(metric.results)
    assert result == pytest.approx({"router/a": 0.5, "router/b": 0.0, "router/c": 0.5})
    np.testing.assert_allclose(metric.usage_by_class, [[2 / 3, 0, 1 / 3], [0, 0, 1]])
    assert plot_router_usage(metric.usage_by_class, ["a", "b", "c"], ["x", "y"], tmp_path / "r.png").is_file()
    kl = MaskKLMetric(expert_names=["a", "b"])
    kl.process(None, [{"mask_kl": torch.tensor([1.0, 3.0])}, {"mask_kl": torch.tensor([2.0, 5.0])}])
    assert kl.compute_metrics(kl.results) == pytest.approx({"kl/a": 1.5, "kl/b": 4.0, "kl_mean": 2.75})
