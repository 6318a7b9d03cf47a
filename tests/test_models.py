import pytest
import torch

from xmodal.models import ModalityClassifier, TinyTextEncoder
from xmodal.models.fusion import drop_modalities
from xmodal.registry import MODELS

IMAGE = dict(type="LeNet5", input_size=28, out_dim=16)
AUDIO = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=12)
HEAD = dict(type="ClsHead", num_classes=5)


def _batch(n=3):
    return {"image": torch.randn(n, 1, 28, 28), "audio": torch.randn(n, 1, 32, 32), "label": torch.tensor([0, 1, 4])}


def test_single_modality_student_ignores_other_modalities():
    model = ModalityClassifier(encoders=dict(image=IMAGE), head=HEAD)
    out = model(**_batch())
    assert out["logits"].shape == (3, 5) and out["embedding"].shape == (3, 16)


@pytest.mark.parametrize("fusion", [dict(type="ConcatFusion", out_dim=20), dict(type="AttentionFusion", dim=16,
                                                                                num_heads=2)])
def test_fusion_teacher(fusion):
    model = ModalityClassifier(encoders=dict(image=IMAGE, audio=AUDIO), fusion=fusion, head=HEAD)
    out = model(**_batch())
    assert out["logits"].shape == (3, 5)
    losses = model(mode="loss", **_batch())
    assert set(losses) == {"loss_ce"} and losses["loss_ce"].requires_grad
    preds = model(mode="predict", **_batch())
    assert len(preds) == 3 and preds[2]["label"] == 4 and preds[0]["logits"].shape == (5,)


def test_missing_modality_names_it():
    model = ModalityClassifier(encoders=dict(image=IMAGE, audio=AUDIO), fusion=dict(type="ConcatFusion"), head=HEAD)
    batch = _batch()
    del batch["audio"]
    with pytest.raises(KeyError, match=r"no \['audio'\]"):
        model(**batch)


def test_two_encoders_need_fusion():
    with pytest.raises(ValueError, match="need a 'fusion'"):
        ModalityClassifier(encoders=dict(image=IMAGE, audio=AUDIO), head=HEAD)


def test_modality_dropout_zeroes_whole_modalities_in_training_only():
    torch.manual_seed(0)
    feats = {"a": torch.ones(1000, 4), "b": torch.ones(1000, 3)}
    out = drop_modalities(feats, 0.5, training=True)
    dropped_a = (out["a"].sum(1) == 0)
    dropped_b = (out["b"].sum(1) == 0)
    assert not (dropped_a & dropped_b).any()  # never both
    assert 0.4 < (dropped_a | dropped_b).float().mean() < 0.6
    assert drop_modalities(feats, 0.5, training=False) is feats


def test_text_encoder_masks_padding():
    enc = TinyTextEncoder(vocab_size=50, hidden_size=16, num_layers=1, num_heads=2, max_length=8).eval()
    tokens = torch.tensor([[2, 5, 7, 0, 0], [2, 5, 7, 9, 9]])
    out = enc(tokens)
    assert out.shape == (2, 16)
    padded_more = torch.tensor([[2, 5, 7, 0, 0, 0, 0]])
    assert torch.allclose(enc(padded_more), out[:1], atol=1e-5)


def test_timm_encoder_builds_offline():
    enc = MODELS.build(dict(type="TimmImageEncoder", model_name="resnet10t", in_channels=1))
    assert enc(torch.randn(2, 1, 32, 32)).shape == (2, enc.out_dim)


def test_lenet5_width_multiplies_channels_and_hidden_units():
    from xmodal.registry import MODELS

    wide = MODELS.build(dict(type="LeNet5", input_size=28, out_dim=10, width=3))
    assert (wide.conv1.out_channels, wide.conv2.out_channels, wide.fc1.out_features) == (18, 48, 360)
    assert wide(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    base = MODELS.build(dict(type="LeNet5", input_size=28, out_dim=10))
    assert sum(p.numel() for p in base.parameters()) == 6 * 26 + 16 * 151 + 120 * 401 + 10 * 121  # the original
    with pytest.raises(ValueError, match="width"):
        MODELS.build(dict(type="LeNet5", width=0))
