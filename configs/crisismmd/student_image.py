# Image-only model (official MLP-Vb) trained on labels alone: the no-KD baseline, and the plain
# config that student-only checkpoints of the KD / MST-Distill recipes load into.
_base_ = [
    "./_base_/models/crisismmd.py",
    "./_base_/datasets/crisismmd.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_5e-3_100e.py",
]
model = {{_base_.image_model}}
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
train_dataloader = dict(dataset=dict(modalities=["image"]))
val_dataloader = dict(dataset=dict(modalities=["image"]))
test_dataloader = dict(dataset=dict(modalities=["image"]))
