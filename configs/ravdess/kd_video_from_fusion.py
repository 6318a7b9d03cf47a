# Video-only student distilled from the video+audio fusion teacher with vanilla KD (official main-KD.py
# with --Tmodel DSCNN-I --Smodel VisualBranchNet). Train the teacher first:
#   python tools/train.py configs/ravdess/teacher_fusion.py --work-dir work_dirs/ravdess/teacher_fusion
_base_ = [
    "./_base_/models/ravdess.py",
    "./_base_/datasets/ravdess.py",
    "../_base_/default_runtime.py",
    "./_base_/schedules/adam_1e-4_100e.py",
]
model = dict(
    type="Distiller",
    student={{_base_.video_model}},
    teachers=dict(
        # checkpoint: a file, or a work dir (its best_*.pth is used)
        t_fusion=dict(config="configs/ravdess/teacher_fusion.py", checkpoint="work_dirs/ravdess/teacher_fusion"),
    ),
    # official main-KD.py: (1 - alpha)·CE + alpha·T²·KL with alpha = 0.5, T = 4 (the official run also
    # halves alpha every 30 epochs; here the weights stay fixed)
    losses=[dict(type="KDLoss", weight=0.5, student="logits", teacher="t_fusion.logits", temperature=4.0)],
    task_loss_weight=0.5,
)
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook")]
