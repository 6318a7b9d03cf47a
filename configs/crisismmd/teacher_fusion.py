# Image + text fusion teacher on CrisisMMD-V2 (official MLP-I).
#   python tools/train.py configs/crisismmd/teacher_fusion.py --work-dir work_dirs/crisismmd/teacher_fusion
_base_ = [
    "./_base_/models/crisismmd.py",
    "./_base_/datasets/crisismmd.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_5e-3_100e.py",
]
model = {{_base_.fusion_model}}
# official model selection: lowest validation loss
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
