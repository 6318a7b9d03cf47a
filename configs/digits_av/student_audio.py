# Audio-only model (the cross-modal teacher for an image student, or a baseline).
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/schedules/adamw_cosine_30e.py",
    "../_base_/default_runtime.py",
]
model = {{_base_.audio_model}}
