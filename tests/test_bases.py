"""The two bases: every task model is a TaskModel (forward dispatch, batch dict or keywords, the
unlabelled-sample rule), every distiller a BaseDistiller (teachers, student weights, init_from,
one teacher-cache switch)."""

import math

import pytest
import torch
import torch.nn.functional as F

import xmodal.distill  # noqa: F401  (registers the distillers)
import xmodal.models  # noqa: F401
from xmodal.distill import Distiller
from xmodal.distill.base import BaseDistiller
from xmodal.engine.checkpoint import save_checkpoint_file
from xmodal.models import ModalityClassifier
from xmodal.models.base import TaskModel, labelled_mask
from xmodal.registry import MODELS

IMAGE = dict(type="LeNet5", input_size=28, out_dim=16)
AUDIO = dict(type="SpectrogramCNN", channels=(4, 8), out_dim=12)
STUDENT = dict(type="ModalityClassifier", encoders=dict(image=IMAGE), head=dict(type="ClsHead", num_classes=4))
TEACHER = dict(type="ModalityClassifier", encoders=dict(image=IMAGE, audio=AUDIO),
               fusion=dict(type="ConcatFusion", out_dim=20), head=dict(type="ClsHead", num_classes=4))
KD = dict(type="KDLoss", student="logits", teacher="t0.logits", temperature=4.0)


def _batch(label):
    torch.manual_seed(1)
    n = len(label)
    return {"image": torch.randn(n, 1, 28, 28), "audio": torch.randn(n, 1, 16, 16), "label": torch.tensor(label)}


def _student():
    torch.manual_seed(0)
    return MODELS.build(STUDENT)


@pytest.fixture
def teacher_ckpt(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "teacher.pth"
    save_checkpoint_file({"state_dict": MODELS.build(TEACHER).state_dict()}, path)
    return path


def test_every_registered_task_model_and_distiller_derives_from_its_base():
    task_models = ["ModalityClassifier", "DualHeadClassifier", "FuseNetSegmenter", "BEVDetector", "MMDet3DDetector",
                   "DualEncoder", "CrossEncoder"]
    distillers = ["Distiller", "RetrievalDistiller", "MSTCoTrainer", "MSTMaskTrainer", "MSTRouterDistiller"]
    for name in task_models:
        assert issubclass(MODELS.get(name), TaskModel), name
    for name in distillers:
        assert issubclass(MODELS.get(name), BaseDistiller), name


def test_a_batch_dict_and_keywords_mean_the_same():
    model = _student().eval()
    batch = _batch([0, 1, 2])
    torch.testing.assert_close(model(batch)["logits"], model(**batch)["logits"])
    assert model(batch, mode="loss").keys() == {"loss_ce"}
    assert len(model(batch, mode="predict")) == 3
    with pytest.raises(TypeError, match="as a dict"):
        model(batch["image"])
    with pytest.raises(ValueError, match="unknown mode 'train'"):
        model(batch, mode="train")


def test_labelled_mask_reads_label_minus_one_label_maps_and_flags():
    assert labelled_mask({"label": torch.tensor([0, -1, 3])}).tolist() == [True, False, True]
    maps = torch.zeros(3, 2, 2, dtype=torch.long)
    maps[1] = -1
    maps[2, 0, 0] = -1  # a partly unlabelled map still counts as labelled
    assert labelled_mask({"label": maps}).tolist() == [True, False, True]
    assert labelled_mask({"labelled": [True, False]}).tolist() == [True, False]
    assert labelled_mask({"text": ["a", "b"]}) is None  # image-caption pairs: every sample supervises


def test_task_loss_is_cross_entropy_on_the_labelled_samples_only():
    model = _student().train()
    batch = _batch([2, -1, 0, -1])
    out = model(batch)
    expected = F.cross_entropy(out["logits"][[0, 2]], torch.tensor([2, 0]))
    assert model.task_loss(out, batch)["loss_ce"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_an_all_unlabelled_batch_gives_an_exact_zero_task_loss_with_finite_zero_gradients():
    model = _student().train()
    loss = model(_batch([-1, -1, -1]), mode="loss")["loss_ce"]
    assert loss.item() == 0.0 and not math.isnan(loss.item())
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() == 0 for g in grads)


def test_distillation_uses_every_sample_while_the_task_loss_skips_the_unlabelled(teacher_ckpt):
    distiller = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(teacher_ckpt))),
                          losses=[KD]).train()
    batch = _batch([-1, -1, -1])
    losses = distiller(batch, mode="loss")
    assert losses["loss_ce"].item() == 0.0
    assert torch.isfinite(losses["loss_kd_0"]) and losses["loss_kd_0"].item() > 0
    sum(losses.values()).backward()
    grads = [p.grad for p in distiller.student.parameters()]
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    from xmodal.distill.losses import KDLoss

    with torch.no_grad():
        s = distiller.student(batch)["logits"]
        t = distiller.teachers["t0"](batch)["logits"]
    assert losses["loss_kd_0"].item() == pytest.approx(KDLoss(4.0)(s, t).item(), rel=1e-5)  # all three samples


def test_segmentation_skips_unlabelled_maps():
    model = MODELS.build(dict(type="FuseNetSegmenter", modalities=("rgb",), width=1 / 16, num_classes=3))
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    label = torch.randint(1, 3, (2, 8, 8))
    label[1] = -1
    loss = model.task_loss({"logits": logits}, {"label": label})["loss_ce"]
    expected = F.cross_entropy(logits[:1], label[:1])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    none = model.task_loss({"logits": logits}, {"label": torch.full_like(label, -1)})["loss_ce"]
    assert none.item() == 0.0


def test_init_from_starts_student_and_teachers_from_an_earlier_run(teacher_ckpt, tmp_path):
    first = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(teacher_ckpt))),
                      losses=[KD])
    with torch.no_grad():
        for p in first.student.parameters():
            p.add_(1.0)
    save_checkpoint_file({"state_dict": first.state_dict()}, tmp_path / "run" / "epoch_1.pth")
    second = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(teacher_ckpt))),
                       losses=[KD], init_from=str(tmp_path / "run" / "epoch_1.pth"))
    for a, b in zip(first.student_state_dict().values(), second.student_state_dict().values()):
        assert torch.equal(a, b)
    plain = ModalityClassifier(**{k: v for k, v in STUDENT.items() if k != "type"})
    plain.load_state_dict(second.student_state_dict(), strict=True)


def test_teacher_cache_is_one_switch_for_every_distiller(teacher_ckpt):
    teachers = dict(t0=dict(model=TEACHER, checkpoint=str(teacher_ckpt)))
    on = Distiller(student=STUDENT, teachers=teachers, losses=[KD], teacher_cache=dict())
    off = Distiller(student=STUDENT, teachers=teachers, losses=[KD], teacher_cache=dict(enabled=False))
    assert on.cache_enabled and on.cache_hook == "DistillerCacheHook" and on.cache_spec is not None
    assert not off.cache_enabled and off.cache_spec is None
    assert MODELS.get("MSTRouterDistiller").cache_hook == "TeacherCacheHook"

    class NoCache(BaseDistiller):
        pass

    with pytest.raises(ValueError, match="model.teacher_cache: NoCache has no teacher cache"):
        NoCache(student=STUDENT, teachers=teachers, teacher_cache=dict())
