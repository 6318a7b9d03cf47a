# Audio-only model (official AudioBranchNet): the cross-modal teacher for a video student, or a baseline.
#   python tools/train.py configs/ravdess/student_audio.py --work-dir work_dirs/ravdess/student_audio
_base_ = [
    "./_base_/models/ravdess.py",
    "./_base_/datasets/ravdess.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.audio_model}}
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
# only the MFCCs are read (9 KB a sample instead of 9 MB)
train_dataloader = dict(dataset=dict(modalities=["audio"]))
val_dataloader = dict(dataset=dict(modalities=["audio"]))
test_dataloader = dict(dataset=dict(modalities=["audio"]))
