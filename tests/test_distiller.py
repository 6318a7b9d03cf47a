import pytest
import torch

from xmodal.distill import Distiller
from xmodal.engine.checkpoint import save_checkpoint_file
from xmodal.models import ModalityClassifier

IMAGE = dict(type="LeNet5", input_size=28, out_dim=16)
AUDIO = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=12)
STUDENT = dict(type="ModalityClassifier", encoders=dict(image=IMAGE), head=dict(type="ClsHead", num_classes=4))
TEACHER = dict(type="ModalityClassifier", encoders=dict(image=IMAGE, audio=AUDIO),
               fusion=dict(type="ConcatFusion", out_dim=20), head=dict(type="ClsHead", num_classes=4))
KD = dict(type="KDLoss", weight=0.5, student="logits", teacher="t0.logits", temperature=2.0)


def _batch():
    torch.manual_seed(1)
    return {"image": torch.randn(3, 1, 28, 28), "audio": torch.randn(3, 1, 16, 16), "label": torch.tensor([0, 1, 3])}


@pytest.fixture
def teacher_ckpt(tmp_path):
    torch.manual_seed(0)
    teacher = ModalityClassifier(**{k: v for k, v in TEACHER.items() if k != "type"})
    path = tmp_path / "teacher.pth"
    save_checkpoint_file({"state_dict": teacher.state_dict()}, path)
    return path, teacher


def _distiller(ckpt, losses=(KD,)):
    return Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(ckpt))), losses=list(losses))


def test_teacher_is_loaded_frozen_and_stays_in_eval(teacher_ckpt):
    path, teacher = teacher_ckpt
    distiller = _distiller(path).train()
    t0 = distiller.teachers["t0"]
    assert not t0.training and distiller.student.training
    assert all(not p.requires_grad for p in t0.parameters())
    assert all(torch.equal(a, b) for a, b in zip(t0.state_dict().values(), teacher.state_dict().values()))


def test_losses_are_logged_separately_and_weighted(teacher_ckpt):
    path, teacher = teacher_ckpt
    distiller = _distiller(path).train()
    batch = _batch()
    losses = distiller(mode="loss", **batch)
    assert set(losses) == {"loss_ce", "loss_kd_0"}
    from xmodal.distill.losses import KDLoss

    with torch.no_grad():
        expected = 0.5 * KDLoss(2.0)(distiller.student(**batch)["logits"], teacher.eval()(**batch)["logits"])
    assert losses["loss_kd_0"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradients_reach_the_student_only(teacher_ckpt):
    distiller = _distiller(teacher_ckpt[0]).train()
    sum(distiller(mode="loss", **_batch()).values()).backward()
    assert all(p.grad is None for p in distiller.teachers.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in distiller.student.parameters())


def test_module_path_features_with_connector(teacher_ckpt):
    feat = dict(type="KDLoss", name="feat_kl", student="encoders.image.fc2", teacher="t0.fusion.fc1",
                connector=dict(type="LinearConnector", in_dim=16, out_dim=20))
    distiller = _distiller(teacher_ckpt[0], losses=[KD, feat])
    losses = distiller(mode="loss", **_batch())
    assert "loss_feat_kl" in losses and torch.isfinite(losses["loss_feat_kl"])
    assert "feat_kl" in distiller.connectors


def test_unknown_reference_lists_nearest_names(teacher_ckpt):
    bad = dict(KD, teacher="t0.fusion.fc")
    with pytest.raises(KeyError, match=r"fusion\.fc1"):
        _distiller(teacher_ckpt[0], losses=[bad])
    with pytest.raises(KeyError, match="teacher name from"):
        _distiller(teacher_ckpt[0], losses=[dict(KD, teacher="t9.logits")])


def test_teacher_without_checkpoint_is_an_error():
    with pytest.raises(ValueError, match=r"^model\.teachers\.t0: teacher 't0' has no 'checkpoint'"):
        Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER)), losses=[KD])


def test_a_modality_missing_from_the_batch_names_the_model_that_reads_it(teacher_ckpt):
    distiller = _distiller(teacher_ckpt[0]).train()
    batch = _batch()
    del batch["audio"]  # the fusion teacher reads image + audio, the student image only
    with pytest.raises(KeyError, match=r"^\"?model\.teachers\.t0: teacher 't0' reads modality \['audio'\], which "
                                       r"the batch does not have \(batch keys: \['image', 'label'\]\).*\(the "
                                       r"student reads \['image'\], teacher 't0' reads \['audio', 'image'\]\)"):
        distiller(mode="loss", **batch)
    with pytest.raises(KeyError, match=r"model\.student: the student reads modality \['image'\]"):
        distiller(mode="loss", audio=torch.randn(3, 1, 16, 16), label=torch.tensor([0, 1, 3]))
    assert distiller(mode="predict", **batch)  # predicting runs the student alone: audio is not needed


def test_student_state_dict_loads_into_plain_student(teacher_ckpt):
    distiller = _distiller(teacher_ckpt[0]).eval()
    plain = ModalityClassifier(**{k: v for k, v in STUDENT.items() if k != "type"}).eval()
    plain.load_state_dict(distiller.student_state_dict(), strict=True)
    batch = _batch()
    assert torch.equal(plain(**batch)["logits"], distiller(mode="tensor", **batch)["logits"])


def test_term_inputs_are_checked_against_the_loss_signature(teacher_ckpt):
    path = teacher_ckpt[0]
    with pytest.raises(KeyError, match="not an extra argument"):
        _distiller(path, [dict(KD, inputs=dict(index="batch.index"))])
    from xmodal.registry import MODELS

    @MODELS.register_module(force=True)
    class _WithIndex(torch.nn.Module):
        def forward(self, s, t, index):
            return (s - t).pow(2).mean() + 0 * index.float().sum()

    with pytest.raises(KeyError, match="must be 'student"):
        _distiller(path, [dict(type="_WithIndex", student="logits", teacher="t0.logits", inputs=dict(index="t9.x"))])
    distiller = _distiller(path, [dict(type="_WithIndex", student="logits", teacher="t0.logits",
                                       inputs=dict(index="batch.index"))])
    with pytest.raises(KeyError, match="batch\\['index'\\]"):
        distiller(mode="loss", **_batch())
    losses = distiller(mode="loss", **_batch(), index=torch.arange(3))
    assert set(losses) == {"loss_ce", "loss__withindex_0"}
