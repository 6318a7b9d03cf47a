# RGB-D FuseNet teacher (official FuseNet-I): depth encoder fused into the RGB encoder stage by stage.
_base_ = [
    "./_base_/models/nyudv2.py",
    "./_base_/datasets/nyudv2.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.fusion_model}}
# official model selection: lowest validation loss (mean per-pixel cross-entropy)
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
