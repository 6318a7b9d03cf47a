# Image-only student distilled from the image+audio fusion teacher with vanilla KD.
# Train the teacher first: python tools/train.py configs/digits_av/teacher_fusion.py
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/schedules/adamw_cosine_30e.py",
    "../_base_/default_runtime.py",
]
model = dict(
    type="Distiller",
    student={{_base_.image_model}},
    teachers=dict(
        # checkpoint: a file, or a work dir (its best_*.pth is used)
        t_fusion=dict(config="configs/digits_av/teacher_fusion.py", checkpoint="work_dirs/teacher_fusion"),
    ),
    losses=[dict(type="KDLoss", weight=1.0, student="logits", teacher="t_fusion.logits", temperature=4.0)],
    task_loss_weight=1.0,
)
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook")]
