# Audio-only model (official AudioBranchNet-VGGS): the cross-modal teacher for a visual student, or a baseline.
#   python tools/train.py configs/vggsound/student_audio.py --work-dir work_dirs/vggsound/student_audio
_base_ = [
    "./_base_/models/vggsound.py",
    "./_base_/datasets/vggsound.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = {{_base_.audio_model}}
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
# only the audio features are read (about 5 KB a sample instead of 1 MB)
train_dataloader = dict(dataset=dict(modalities=["audio"]))
val_dataloader = dict(dataset=dict(modalities=["audio"]))
test_dataloader = dict(dataset=dict(modalities=["audio"]))
