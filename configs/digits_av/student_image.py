# Image-only model trained on labels alone (the "no KD" baseline; also the plain student config
# that student-only checkpoints from the KD recipes load into).
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/schedules/adamw_cosine_30e.py",
    "../_base_/default_runtime.py",
]
model = {{_base_.image_model}}
