# Visual-only model (official VisualBranchNet-VGGS) trained on labels alone: the no-KD baseline, and
# the plain config that student-only checkpoints of the KD / MST-Distill recipes load into.
_base_ = [
    "./_base_/models/vggsound.py",
    "./_base_/datasets/vggsound.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.visual_model}}
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
# only the visual features are read
train_dataloader = dict(dataset=dict(modalities=["visual"]))
val_dataloader = dict(dataset=dict(modalities=["visual"]))
test_dataloader = dict(dataset=dict(modalities=["visual"]))
