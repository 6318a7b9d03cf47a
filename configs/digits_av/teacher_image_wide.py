# An image-only teacher on digits-av for the same-modality control of docs/kd_efficacy.md: LeNet-5 at 4x
# width (24-64 channels, 480 hidden units; 14x the student's parameters). KD from it into the LeNet-5 image
# student separates "KD does not help here" from "cross-modal KD does not help here". On this data no
# image-only model found is clearly stronger than the student (validation accuracy, seed 0: LeNet-5 at
# width 1 / 2 / 4: 0.869 / 0.858 / 0.869; a 3-layer CNN with global pooling: 0.775), so this teacher
# is as accurate as the student, not more.
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/schedules/adamw_cosine_30e.py",
    "../_base_/default_runtime.py",
]
model = dict(
    type="ModalityClassifier",
    encoders=dict(image=dict(type="LeNet5", in_channels=1, input_size=28, out_dim=84, width=4)),
    head={{_base_.head}},
)
