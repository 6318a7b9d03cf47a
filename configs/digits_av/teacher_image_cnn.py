# A larger image-only teacher on digits-av: the 3-layer CNN of the audio branch (16-32-64 → 32-64-128
# channels) applied to the 28×28 image. It is the same-modality control of docs/kd_efficacy.md: KD from an
# image teacher into the LeNet-5 image student separates "KD does not help here" from "cross-modal KD does
# not help here".
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/schedules/adamw_cosine_30e.py",
    "../_base_/default_runtime.py",
]
model = dict(
    type="ModalityClassifier",
    encoders=dict(image=dict(type="SpectrogramCNN", in_channels=1, channels=(32, 64, 128), out_dim=128, dropout=0.3)),
    head={{_base_.head}},
)
