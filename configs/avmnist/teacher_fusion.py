# Image+audio fusion teacher (official CNN-I).
#   python tools/train.py configs/avmnist/teacher_fusion.py --work-dir work_dirs/avmnist/teacher_fusion
_base_ = [
    "./_base_/models/avmnist.py",
    "./_base_/datasets/avmnist.py",
    "./_base_/schedules/adam_1e-4_100e.py",
    "../_base_/default_runtime.py",
]
# official selection: the lowest validation loss
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
model = {{_base_.fusion_model}}
