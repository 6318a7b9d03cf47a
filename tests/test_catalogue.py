"""docs/catalogue.md is what tools/catalogue.py generates from the registry."""

from xmodal.apis.catalogue import catalogue, input_of, main
from xmodal.registry import MODELS


def test_the_catalogue_page_is_current():
    assert main(["--check"]) == 0, "docs/catalogue.md is out of date: run python tools/catalogue.py"


def test_every_encoder_fusion_and_task_model_has_an_input():
    text = catalogue()
    for name in ("LeNet5", "FeatureMLP", "ConcatFusion", "ModalityClassifier", "ClsHead"):
        assert f"| `{name}` |" in text
    assert "see its docstring" not in text
    assert input_of(MODELS.get("FeatureMLP")) == "(B, in_dim)"
