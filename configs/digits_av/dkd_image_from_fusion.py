# Image-only student distilled from the fusion teacher with decoupled KD (Zhao et al. 2022):
# alpha=1, beta=8, T=4 and the paper's linear warm-up of the DKD weight over the first 20 epochs.
# Train the teacher first: python tools/train.py configs/digits_av/teacher_fusion.py
_base_ = ["./kd_image_from_fusion.py"]
model = dict(
    losses=[dict(type="DKDLoss", weight=1.0, student="logits", teacher="t_fusion.logits", temperature=4.0,
                 alpha=1.0, beta=8.0)],
)
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook"),
                dict(type="DistillWeightWarmupHook", terms=["dkd_0"], warmup_epochs=20)]
