# Image-only LeNet-5 distilled from the CNN-I fusion teacher with vanilla KD (T=4).
#   python tools/train.py configs/avmnist/teacher_fusion.py --work-dir work_dirs/avmnist/teacher_fusion
#   python tools/train.py configs/avmnist/kd_image_from_fusion.py --work-dir work_dirs/avmnist/kd_image_from_fusion
_base_ = [
    "./_base_/models/avmnist.py",
    "./_base_/datasets/avmnist.py",
    "./_base_/schedules/adam_1e-4_100e.py",
    "../_base_/default_runtime.py",
]
# official selection: the lowest validation loss
default_hooks = dict(checkpoint=dict(save_best="cross_entropy", rule="less"))
model = dict(
    type="Distiller",
    student={{_base_.image_model}},
    teachers=dict(t_fusion=dict(config="configs/avmnist/teacher_fusion.py",
                                checkpoint="work_dirs/avmnist/teacher_fusion")),
    losses=[dict(type="KDLoss", weight=1.0, student="logits", teacher="t_fusion.logits", temperature=4.0)],
)
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook")]
