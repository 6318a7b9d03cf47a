# Image-only student distilled with TAID: the target moves from the student's own prediction towards
# the fusion teacher's as t rises from 0.4 to 1 (adaptively, see docs/losses.md).
# Train the teacher first: python tools/train.py configs/digits_av/teacher_fusion.py
_base_ = ["./kd_image_from_fusion.py"]
model = dict(losses=[dict(type="TAIDLoss", name="taid", weight=1.0, student="logits", teacher="t_fusion.logits")])
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook"),
                dict(type="TAIDHook", terms=["taid"], t_start=0.4, t_end=1.0, alpha=5e-4, beta=0.99)]
