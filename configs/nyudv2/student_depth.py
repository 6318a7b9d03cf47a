# Depth-only FuseNet branch (official FuseNet-Dbranch), trained on labels alone; also the
# cross-modal teacher of an RGB student.
_base_ = [
    "./_base_/models/nyudv2.py",
    "./_base_/datasets/nyudv2.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.depth_model}}
# official model selection: lowest validation loss (mean per-pixel cross-entropy)
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
# only the depth maps are read
train_dataloader = dict(dataset=dict(modalities=["depth"]))
val_dataloader = dict(dataset=dict(modalities=["depth"]))
test_dataloader = dict(dataset=dict(modalities=["depth"]))
