# Multimodal (image + audio) fusion teacher on digits-av.
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/schedules/adamw_cosine_30e.py",
    "../_base_/default_runtime.py",
]
model = {{_base_.fusion_model}}
