# Text-only model (official MLP-Tb): the cross-modal teacher for an image student, or a baseline.
#   python tools/train.py configs/crisismmd/student_text.py --work-dir work_dirs/crisismmd/student_text
_base_ = [
    "./_base_/models/crisismmd.py",
    "./_base_/datasets/crisismmd.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_5e-3_100e.py",
]
model = {{_base_.text_model}}
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
train_dataloader = dict(dataset=dict(modalities=["text"]))
val_dataloader = dict(dataset=dict(modalities=["text"]))
test_dataloader = dict(dataset=dict(modalities=["text"]))
