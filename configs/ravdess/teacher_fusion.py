# Video + audio fusion teacher on RAVDESS (official DSCNN-I).
#   python tools/train.py configs/ravdess/teacher_fusion.py --work-dir work_dirs/ravdess/teacher_fusion
_base_ = [
    "./_base_/models/ravdess.py",
    "./_base_/datasets/ravdess.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.fusion_model}}
# official model selection: lowest validation loss
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
