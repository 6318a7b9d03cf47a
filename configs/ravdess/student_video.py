# Video-only model (official VisualBranchNet) trained on labels alone: the no-KD baseline, and the
# plain config that student-only checkpoints of the KD / MST-Distill recipes load into.
#   python tools/train.py configs/ravdess/student_video.py --work-dir work_dirs/ravdess/student_video
_base_ = [
    "./_base_/models/ravdess.py",
    "./_base_/datasets/ravdess.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.video_model}}
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
# only the face clips are read
train_dataloader = dict(dataset=dict(modalities=["video"]))
val_dataloader = dict(dataset=dict(modalities=["video"]))
test_dataloader = dict(dataset=dict(modalities=["video"]))
