"""The Distiller's teacher cache: cached and live runs give the same losses (KD on logits, FitNet on a
recorded feature), the stored rows are the teacher's own outputs, entries are reused and rebuilt by
fingerprint, and bad options or random augmentation are refused with the culprit named."""

import json

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.hooks import Hook
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

from xmodal.apis.train import build_runner, parse_args
from xmodal.data import PairedDataset
from xmodal.distill import Distiller, teacher_cache
from xmodal.distill.distiller_cache import build_distiller_cache
from xmodal.engine.checkpoint import save_checkpoint_file
from xmodal.models import ModalityClassifier
from xmodal.registry import TRANSFORMS

HEAD = dict(type="ClsHead", num_classes=3)
STUDENT = dict(type="ModalityClassifier", encoders=dict(image=dict(type="FeatureMLP", in_dim=8, hidden_dims=(10,))),
               head=HEAD)
TEACHER = dict(type="ModalityClassifier", head=HEAD, fusion=dict(type="ConcatFusion", out_dim=10),
               encoders=dict(image=dict(type="FeatureMLP", in_dim=8, hidden_dims=(12,)),
                             audio=dict(type="FeatureMLP", in_dim=6, hidden_dims=(12,))))
KD = dict(type="KDLoss", name="kd", weight=0.7, student="logits", teacher="t0.logits", temperature=2.0)
FITNET = dict(type="FitNetLoss", name="fitnet", weight=0.5, student="encoders.image.fc1", teacher="t0.fusion.fc1")


class _Multiply(torch.nn.Module):
    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor  # not in the module's repr

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor


@TRANSFORMS.register_module(name="CacheTestScale", force=True)
class Scale:
    """A deterministic transform whose argument is kept inside a torch module, where ``repr`` does not
    show it (like LogMelSpectrogram's n_mels): both the config and the dataset's fingerprint must see it."""

    def __init__(self, factor: float) -> None:
        self.op = _Multiply(factor)

    def __call__(self, sample: dict) -> dict:
        sample["image"] = self.op(sample["image"])
        return sample


def _write_data(root, version="1"):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    labels = np.arange(24) % 3
    np.save(root / "image.npy", (rng.normal(size=(24, 8)) + labels[:, None]).astype(np.float32))
    np.save(root / "audio.npy", rng.normal(size=(24, 6)).astype(np.float32))
    np.save(root / "labels.npy", labels.astype(np.int64))
    (root / "meta.json").write_text(json.dumps({
        "name": "tiny-vec", "version": version, "task": "classification", "classes": ["a", "b", "c"],
        "modalities": {"image": {"shape": [8], "dtype": "float32"}, "audio": {"shape": [6], "dtype": "float32"}}}))
    order = rng.permutation(24).tolist()
    (root / "splits.json").write_text(json.dumps({"train": order[:16], "val": order[16:20], "test": order[20:]}))
    return root


def _teacher_ckpt(path, seed):
    torch.manual_seed(seed)
    teacher = ModalityClassifier(**{k: v for k, v in TEACHER.items() if k != "type"})
    save_checkpoint_file({"state_dict": teacher.state_dict()}, path)
    return teacher


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tcache")
    root = _write_data(tmp / "data")
    teacher = _teacher_ckpt(tmp / "teacher.pth", seed=0)
    init_default_scope("xmodal")
    return tmp, root, teacher


def _cfg(root, ckpt, work_dir, cache=None, epochs=2):
    model = dict(type="Distiller", student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(ckpt))),
                 losses=[KD, FITNET])
    if cache is not None:
        model["teacher_cache"] = cache
    return Config(dict(
        default_scope="xmodal", work_dir=str(work_dir), model=model, randomness=dict(seed=3),
        train_dataloader=dict(batch_size=4, num_workers=0, sampler=dict(type="DefaultSampler", shuffle=True),
                              collate_fn=dict(type="default_collate"),
                              dataset=dict(type="PairedDataset", data_root=str(root), split="train")),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        default_hooks=dict(checkpoint=None, logger=dict(type="LoggerHook", interval=1000)), log_level="WARNING"))


class _Recorder(Hook):
    """Per-iteration losses, and how often the teacher ran once training had started."""

    priority = "LOWEST"  # after DistillerCacheHook has built the cache

    def __init__(self):
        self.losses, self.teacher_calls = [], 0

    def before_train(self, runner):
        runner.model.teachers["t0"].register_forward_pre_hook(lambda *_: setattr(self, "teacher_calls",
                                                                                self.teacher_calls + 1))

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        self.losses.append({k: float(v.detach()) for k, v in outputs.items()})


def _train_tool(cfg, tmp_path):
    """Train as tools/train.py does (it adds DistillerCacheHook itself)."""
    path = tmp_path / "config.py"
    cfg.dump(str(path))
    runner = build_runner(parse_args([str(path), "--work-dir", cfg.work_dir]))
    recorder = _Recorder()
    runner.register_hook(recorder)
    runner.train()
    return runner, recorder


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    build = teacher_cache._build

    def counting(entry, *args, **kwargs):
        calls.append(entry.name)
        return build(entry, *args, **kwargs)

    monkeypatch.setattr(teacher_cache, "_build", counting)
    return calls


def test_cached_run_matches_live_run_and_is_built_once(setup, tmp_path, count_builds):
    tmp, root, teacher = setup
    live_runner = Runner.from_cfg(_cfg(root, tmp / "teacher.pth", tmp_path / "live"))
    live = _Recorder()
    live_runner.register_hook(live)
    live_runner.train()

    runner, cached = _train_tool(_cfg(root, tmp / "teacher.pth", tmp_path / "cached", dict()), tmp_path)
    assert len(count_builds) == 1
    assert live.teacher_calls == len(live.losses) == 8 and cached.teacher_calls == 0
    assert len(cached.losses) == 8
    for a, b in zip(live.losses, cached.losses):
        assert a.keys() == b.keys() == {"loss", "loss_ce", "loss_kd", "loss_fitnet"}
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-6), key

    # the stored rows are the teacher's outputs on the training split, row = position in the split
    arrays = runner.model._cache
    assert all(isinstance(a, np.memmap) for a in arrays.values())
    split = json.loads((root / "splits.json").read_text())["train"]
    image = torch.from_numpy(np.load(root / "image.npy")[split])
    audio = torch.from_numpy(np.load(root / "audio.npy")[split])
    with torch.no_grad():
        teacher.eval()
        fc1 = teacher.fusion.fc1(torch.cat([teacher.encoders["audio"](audio), teacher.encoders["image"](image)], 1))
        logits = teacher(image=image, audio=audio)["logits"]
    np.testing.assert_allclose(arrays[("t0", "logits")], logits.numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(arrays[("t0", "fusion.fc1")], fc1.numpy(), rtol=1e-6, atol=1e-6)
    cache_dir = tmp_path / "cached" / "teacher_cache"  # the default: <work_dir>/teacher_cache
    entry = cache_dir / count_builds[0]
    assert sorted(p.name for p in entry.iterdir()) == ["meta.json", "t0.fusion.fc1.npy", "t0.logits.npy"]

    # a second run with the same teacher, data and pipeline reads the entry instead of rebuilding it
    _, again = _train_tool(_cfg(root, tmp / "teacher.pth", tmp_path / "again", dict(dir=str(cache_dir)), epochs=1),
                           tmp_path)
    assert len(count_builds) == 1 and again.teacher_calls == 0
    assert [p.name for p in cache_dir.iterdir()] == [count_builds[0]]


def _build(root, ckpt, cache_dir, pipeline=(), outputs=None):
    model = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(ckpt))),
                      losses=[KD, FITNET], teacher_cache=dict(outputs=outputs))
    dataset_cfg = dict(type="PairedDataset", data_root=str(root), split="train", pipeline=list(pipeline))
    dataset = PairedDataset(root, "train", pipeline=list(pipeline))
    return build_distiller_cache(model, dataset, default_collate, cache_dir, 5, dataset_cfg=dataset_cfg)


def test_changed_teacher_data_or_pipeline_builds_a_new_entry(setup, tmp_path, count_builds):
    tmp, root, _ = setup
    cache_dir = tmp_path / "cache"
    first = _build(root, tmp / "teacher.pth", cache_dir)
    _build(root, tmp / "teacher.pth", cache_dir)
    assert len(count_builds) == 1

    other = _teacher_ckpt(tmp_path / "other.pth", seed=1)
    rebuilt = _build(root, tmp_path / "other.pth", cache_dir)
    assert len(count_builds) == 2
    assert not np.allclose(rebuilt[("t0", "logits")], first[("t0", "logits")])
    image = torch.from_numpy(np.load(root / "image.npy")[json.loads((root / "splits.json").read_text())["train"]])
    audio = torch.from_numpy(np.load(root / "audio.npy")[json.loads((root / "splits.json").read_text())["train"]])
    with torch.no_grad():
        expected = other.eval()(image=image, audio=audio)["logits"].numpy()
    np.testing.assert_allclose(rebuilt[("t0", "logits")], expected, rtol=1e-6, atol=1e-6)

    _build(_write_data(tmp_path / "data_v2", version="2"), tmp / "teacher.pth", cache_dir)
    assert len(count_builds) == 3
    scaled = _build(root, tmp / "teacher.pth", cache_dir, pipeline=[dict(type="CacheTestScale", factor=2.0)])
    assert len(count_builds) == 4
    _build(root, tmp / "teacher.pth", cache_dir, pipeline=[dict(type="CacheTestScale", factor=3.0)])
    assert len(count_builds) == 5  # told apart by the pipeline config and by the dataset's own fingerprint:
    assert (PairedDataset(root, "train", pipeline=[dict(type="CacheTestScale", factor=2.0)]).fingerprint()
            != PairedDataset(root, "train", pipeline=[dict(type="CacheTestScale", factor=3.0)]).fingerprint())
    assert not np.allclose(scaled[("t0", "logits")], first[("t0", "logits")])
    assert len(set(count_builds)) == 5 and len(list(cache_dir.iterdir())) == 5

    # caching fewer outputs is another entry too (here: only the logits, with a KD term alone)
    model = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(tmp / "teacher.pth"))),
                      losses=[KD], teacher_cache=dict())
    arrays = build_distiller_cache(model, PairedDataset(root, "train"), default_collate, cache_dir, 16)
    assert list(arrays) == [("t0", "logits")] and len(count_builds) == 6
    np.testing.assert_allclose(arrays[("t0", "logits")], first[("t0", "logits")], rtol=1e-6, atol=1e-6)


def test_random_augmentation_is_refused_by_name(setup, tmp_path, count_builds):
    tmp, root, _ = setup
    with pytest.raises(ValueError, match="GaussianNoise"):
        _build(root, tmp / "teacher.pth", tmp_path / "cache", pipeline=[dict(type="GaussianNoise", key="image")])
    assert count_builds == [] and not (tmp_path / "cache").exists()


@pytest.mark.parametrize(("cache", "message"), [
    (dict(outputs=["t0.fusion.fc2"]), r"'t0\.fusion\.fc2' is not a teacher output.*t0\.fusion\.fc1"),
    (dict(outputs=["t9.logits"]), r"'t9\.logits' is not a teacher output"),
    (dict(outputs=["t0.logits"]), r"also read \['t0\.fusion\.fc1'\] from teacher 't0'"),
    (dict(output=["t0.logits"]), r"unknown option\(s\) \['output'\]"),
])
def test_bad_cache_options_name_the_key(setup, cache, message):
    tmp, _, _ = setup
    with pytest.raises(KeyError, match=message):
        Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(tmp / "teacher.pth"))),
                  losses=[KD, FITNET], teacher_cache=cache)


def test_training_without_the_cache_hook_is_a_clear_error(setup):
    tmp, _, _ = setup
    model = Distiller(student=STUDENT, teachers=dict(t0=dict(model=TEACHER, checkpoint=str(tmp / "teacher.pth"))),
                      losses=[KD], teacher_cache=dict()).train()
    batch = {"image": torch.randn(2, 8), "audio": torch.randn(2, 6), "label": torch.tensor([0, 1]),
             "index": torch.tensor([0, 1])}
    with pytest.raises(RuntimeError, match="DistillerCacheHook"):
        model(mode="loss", **batch)
    model.eval()  # evaluation needs no cache: the teachers run live if a loss is asked for
    assert set(model(mode="loss", **batch)) == {"loss_ce", "loss_kd"}
