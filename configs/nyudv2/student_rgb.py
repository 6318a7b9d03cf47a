# RGB-only FuseNet branch (official FuseNet-RGBbranch), trained on labels alone (the no-KD baseline).
_base_ = [
    "./_base_/models/nyudv2.py",
    "./_base_/datasets/nyudv2.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.rgb_model}}
# official model selection: lowest validation loss (mean per-pixel cross-entropy)
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
# only the RGB frames are read
train_dataloader = dict(dataset=dict(modalities=["rgb"]))
val_dataloader = dict(dataset=dict(modalities=["rgb"]))
test_dataloader = dict(dataset=dict(modalities=["rgb"]))
