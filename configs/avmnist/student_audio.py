# Audio-only ThreeLayerCNN-A (the cross-modal teacher of an image student).
#   python tools/train.py configs/avmnist/student_audio.py --work-dir work_dirs/avmnist/student_audio
_base_ = [
    "./_base_/models/avmnist.py",
    "./_base_/datasets/avmnist.py",
    "./_base_/schedules/adam_1e-4_100e.py",
    "../_base_/default_runtime.py",
]
# official selection: the lowest validation loss
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
model = {{_base_.audio_model}}
