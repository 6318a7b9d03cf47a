# Image-only student distilled from the image+text fusion teacher with vanilla KD (official main-KD.py
# with --Tmodel MLP-I --Smodel MLP-Vb). Train the teacher first:
#   python tools/train.py configs/crisismmd/teacher_fusion.py --work-dir work_dirs/crisismmd/teacher_fusion
_base_ = [
    "./_base_/models/crisismmd.py",
    "./_base_/datasets/crisismmd.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_5e-3_100e.py",
]
model = dict(
    type="Distiller",
    student={{_base_.image_model}},
    teachers=dict(
        # checkpoint: a file, or a work dir (its best_*.pth is used)
        t_fusion=dict(config="configs/crisismmd/teacher_fusion.py", checkpoint="work_dirs/crisismmd/teacher_fusion"),
    ),
    # official main-KD.py: (1 - alpha)·CE + alpha·T²·KL with alpha = 0.5, T = 4 (the official run also
    # halves alpha every 30 epochs; here the weights stay fixed)
    losses=[dict(type="KDLoss", weight=0.5, student="logits", teacher="t_fusion.logits", temperature=4.0)],
    task_loss_weight=0.5,
)
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook")]
