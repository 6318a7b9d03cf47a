"""Mixed precision (``--amp``): the CPU bf16 optimizer wrapper trains a Distiller like fp32 does, the
distillation losses compute in fp32 under autocast, ``enable_amp`` picks the wrapper for the machine,
and ``tools/train.py --amp`` runs end to end on CPU with bf16 autocast."""

import copy
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from tests.conftest import REPO
from tests.test_distiller import KD, STUDENT, TEACHER  # the same tiny image student and fusion teacher
from xmodal.apis.config import amp_for_this_machine, enable_amp, load_config
from xmodal.data.writer import write_dataset
from xmodal.distill import Distiller
from xmodal.distill import losses as L
from xmodal.engine.checkpoint import save_checkpoint_file
from xmodal.engine.optim_wrapper import CPUBf16OptimWrapper
from xmodal.engine.unwrap import unwrap
from xmodal.models import ModalityClassifier
from xmodal.registry import HOOKS, OPTIM_WRAPPERS


@pytest.fixture
def teacher_ckpt(tmp_path):
    torch.manual_seed(0)
    teacher = ModalityClassifier(**{k: v for k, v in TEACHER.items() if k != "type"})
    save_checkpoint_file({"state_dict": teacher.state_dict()}, tmp_path / "teacher.pth")
    return tmp_path / "teacher.pth"


def _one_step(wrapper_type, teacher_ckpt):
    """One SGD step of a freshly built (seeded, so identical) KD Distiller; the student's last layer
    reports the dtype it computed in."""
    torch.manual_seed(0)
    model = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(teacher_ckpt))),
                      losses=[KD])
    wrapper = wrapper_type(optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(1)
    batch = {"image": torch.randn(8, 1, 28, 28), "audio": torch.randn(8, 1, 16, 16), "label": torch.arange(8) % 4}
    dtypes = []
    handle = model.student.head.fc.register_forward_hook(lambda module, args, out: dtypes.append(out.dtype))
    log_vars = model.train_step(batch, wrapper)
    handle.remove()
    return model, before, {k: float(v.detach()) for k, v in log_vars.items()}, dtypes


def test_cpu_bf16_step_is_finite_close_to_fp32_and_updates_the_student(teacher_ckpt):
    fp32_model, before, fp32, fp32_dtypes = _one_step(OptimWrapper, teacher_ckpt)
    bf16_model, before_bf16, bf16, bf16_dtypes = _one_step(CPUBf16OptimWrapper, teacher_ckpt)
    assert all(torch.equal(before[k], before_bf16[k]) for k in before)  # same start
    assert fp32_dtypes == [torch.float32] and bf16_dtypes == [torch.bfloat16]
    assert all(math.isfinite(v) for v in bf16.values())
    # bf16 keeps 8 significant bits: every rounding of an input, weight or activation is off by up to
    # 2^-9 ≈ 2e-3 relative (products accumulate in fp32). The logits here are O(0.1-1), so after the
    # five layers they move by O(1e-3), and CE ≈ 1.4 and the KD term by about as much. The losses
    # differ (bf16 really ran) but by less than 5e-3.
    assert bf16["loss"] != fp32["loss"]
    assert abs(bf16["loss"] - fp32["loss"]) < 5e-3 and abs(bf16["loss_kd_0"] - fp32["loss_kd_0"]) < 5e-3

    def delta(model, start):
        return torch.cat([(p.detach() - start[f"student.{k}"]).flatten() for k, p in model.student.named_parameters()])

    d32, d16 = delta(fp32_model, before), delta(bf16_model, before)
    assert d16.abs().max() > 1e-3  # the student moved
    # gradients carry the same ~1e-3 relative noise: the update points the same way, with the same length
    assert torch.nn.functional.cosine_similarity(d32, d16, 0) > 0.98
    assert d16.norm() / d32.norm() == pytest.approx(1.0, abs=0.05)
    # fp32 master weights; the frozen teacher is untouched
    assert all(p.dtype == torch.float32 for p in bf16_model.parameters())
    teacher = {k: v for k, v in bf16_model.state_dict().items() if k.startswith("teachers.")}
    assert teacher and all(torch.equal(v, before[k]) for k, v in teacher.items())


def _loss_cases() -> dict:
    torch.manual_seed(0)
    b, c = 16, 10
    s, t = torch.randn(b, c) * 3, torch.randn(b, c) * 3
    fs, ft = torch.randn(b, 32), torch.randn(b, 48)
    y = torch.randint(0, c, (b,))
    return {
        "KDLoss": (L.KDLoss(), (s, t)), "DKDLoss": (L.DKDLoss(), (s, t, y)), "DISTLoss": (L.DISTLoss(), (s, t)),
        "PLDLoss": (L.PLDLoss(), (s, t, y)), "SinKDLoss": (L.SinKDLoss(), (s, t)), "TAIDLoss": (L.TAIDLoss(), (s, t)),
        "DHOLoss": (L.DHOLoss(), (s, t, y, s + 0.1)), "DualHeadKDLoss": (L.DualHeadKDLoss(), (s, t)),
        "FitNetLoss": (L.FitNetLoss(), (fs, fs + 0.3)), "RKDLoss": (L.RKDLoss(), (fs, ft)),
        "MADLoss": (L.MADLoss(), (fs, ft, t)), "LoadBalanceLoss": (L.LoadBalanceLoss(), (torch.softmax(s, 1),)),
        # these two have learned projection heads (Linear layers), which autocast runs in bf16 by design
        "CRDLoss": (L.CRDLoss(32, 48, num_data=b, num_negatives=8), (fs, ft, torch.arange(b))),
        "C2KDLoss": (L.C2KDLoss(32, 48, c), (fs, ft, y, t, s)),
    }


@pytest.mark.parametrize("name", list(_loss_cases()))
def test_losses_compute_in_fp32_under_autocast(name):
    loss, args = _loss_cases()[name]
    torch.manual_seed(2)  # the same negatives / initial state for both calls
    reference = copy.deepcopy(loss)(*args)
    torch.manual_seed(2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        amp = copy.deepcopy(loss)(*args)
    assert amp.dtype == torch.float32
    if name in ("CRDLoss", "C2KDLoss"):  # only the heads' bf16 outputs differ; the rest is fp32
        assert amp.item() == pytest.approx(reference.item(), rel=1e-3)
    else:  # softmax, KL, Gram and distance matrices: no op of these losses may run in bf16
        assert amp.item() == pytest.approx(reference.item(), rel=1e-6, abs=1e-9)


def _student_cfg() -> Config:
    return load_config(REPO / "configs/digits_av/student_image.py")


def test_enable_amp_without_cuda_picks_the_cpu_bf16_wrapper(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _student_cfg()
    cfg.optim_wrapper.loss_scale = 512.0  # e.g. a config written for CUDA AMP: not an argument on CPU
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == "CPUBf16OptimWrapper" and "loss_scale" not in cfg.optim_wrapper
    assert cfg.optim_wrapper.optimizer == dict(type="AdamW", lr=1e-3, weight_decay=1e-2)
    model = torch.nn.Linear(2, 2)
    built = OPTIM_WRAPPERS.build(dict(cfg.optim_wrapper, optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    assert isinstance(built, CPUBf16OptimWrapper)


def test_enable_amp_with_cuda_picks_fp16_with_dynamic_loss_scale(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    cfg = _student_cfg()
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == "dynamic"
    cfg = _student_cfg()
    cfg.optim_wrapper.loss_scale = 512.0
    enable_amp(cfg)
    assert cfg.optim_wrapper.type == "AmpOptimWrapper" and cfg.optim_wrapper.loss_scale == 512.0  # kept


def test_enable_amp_refuses_an_unknown_wrapper_type():
    cfg = _student_cfg()
    cfg.optim_wrapper.type = "ApexOptimWrapper"
    with pytest.raises(ValueError, match=r"--amp: optim_wrapper type 'ApexOptimWrapper' cannot be switched to mixed "
                                         r"precision; expected one of OptimWrapper, AmpOptimWrapper"):
        enable_amp(cfg)


@HOOKS.register_module(force=True)
class AutocastProbeHook(Hook):
    """Logs the dtype the model's last layer computes in during the first training step."""

    def before_train(self, runner) -> None:
        layer = unwrap(runner.model).head.fc

        def report(module, args, out):
            runner.logger.info(f"autocast probe: first training step computed in {out.dtype}")
            self.handle.remove()

        self.handle = layer.register_forward_hook(report)


@pytest.mark.slow
def test_train_tool_with_amp_runs_bf16_on_cpu(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(24) % 10
    write_dataset(tmp_path / "data", {"image": rng.normal(size=(24, 1, 28, 28)).astype(np.float32),
                                      "audio": rng.normal(size=(24, 1, 64, 64)).astype(np.float32)},
                  labels, [str(i) for i in range(10)], "tiny", "tests",
                  {"train": list(range(16)), "val": list(range(16, 20)), "test": list(range(20, 24))})
    config = tmp_path / "student_amp.py"
    config.write_text(f"""
_base_ = [{str(REPO / "configs/digits_av/student_image.py")!r}]
data_root = {str(tmp_path / "data")!r}
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
train_cfg = dict(max_epochs=1)
default_hooks = dict(logger=dict(interval=1))
custom_imports = dict(imports=["tests.test_amp"], allow_failed_imports=False)
custom_hooks = [dict(type="RNGStateHook"), dict(type="AutocastProbeHook")]
visualizer = dict(type="Visualizer", vis_backends=[dict(type="LocalVisBackend")])
""")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, str(REPO / "tools/train.py"), str(config), "--amp", "--work-dir", str(tmp_path / "work")]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (log,) = (tmp_path / "work").glob("*/*.log")
    text = log.read_text()
    assert "autocast probe: first training step computed in torch.bfloat16" in text
    assert Config.fromfile(str(tmp_path / "work" / "student_amp.py")).optim_wrapper.type == "CPUBf16OptimWrapper"
    (scalars,) = (tmp_path / "work").glob("*/vis_data/scalars.json")
    losses = [json.loads(line)["loss"] for line in scalars.read_text().splitlines() if '"loss"' in line]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)  # 16 samples / batch 8
    assert (tmp_path / "work" / "epoch_1.pth").is_file()


def test_gpu_amp_configs_train_on_cpu_with_bf16(monkeypatch):
    # the shipped GPU-scale retrieval configs name AmpOptimWrapper, which mmengine refuses without CUDA
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = load_config(REPO / "configs/retrieval/cprd_flickr30k.py")
    assert cfg.optim_wrapper.type == "AmpOptimWrapper"
    assert amp_for_this_machine(cfg)
    assert cfg.optim_wrapper.type == "CPUBf16OptimWrapper" and "loss_scale" not in cfg.optim_wrapper
    assert not amp_for_this_machine(load_config(REPO / "configs/digits_av/student_image.py"))
