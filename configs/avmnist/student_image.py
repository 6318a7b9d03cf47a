# Image-only LeNet-5 (the no-KD baseline of an image student).
#   python tools/train.py configs/avmnist/student_image.py --work-dir work_dirs/avmnist/student_image
_base_ = [
    "./_base_/models/avmnist.py",
    "./_base_/datasets/avmnist.py",
    "./_base_/schedules/adam_1e-4_100e.py",
    "../_base_/default_runtime.py",
]
# official selection: the lowest validation loss
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
model = {{_base_.image_model}}
