# MST-Distill on digits-av: image-only student, mixture of specialised teachers built from the
# image+audio fusion teacher and the audio-only (cross-modal) teacher. One config, three stages:
#   python tools/train.py configs/mst_distill/mst_digits_image.py            # stages 1 -> 3
#   python tools/train.py configs/mst_distill/mst_digits_image.py --stage 3  # rerun one stage
#   python tools/test.py configs/mst_distill/mst_digits_image.py work_dirs/mst_digits_image/stage3
# The MST modules' defaults are the official ones (Adam 1e-4, T=4, MaskNet factor 2 / 3 heads,
# top-1 routing, KL load balance, w_lb x0.9 / 10 epochs, w_kl x0.5 / 30 epochs). The epoch counts
# and learning rates below are sized for digits-av (1,078 training samples, not AV-MNIST's 42,000):
# see docs/mst_distill.md.
_base_ = [
    "../_base_/models/digits_av.py",
    "../_base_/datasets/digits_av.py",
    "../_base_/default_runtime.py",
]
student = {{_base_.image_model}}
teachers = dict(t_fusion=dict(model={{_base_.fusion_model}}), t_audio=dict(model={{_base_.audio_model}}))
# Two masked layers per teacher, as in the official recipe: a 1-D and (audio) a 2-D feature. The 2-D mask
# sits on the BatchNorm after the last convolution, not on the convolution: BatchNorm's fixed statistics turn
# a mask's scaling into a shift (an untrained mask on the convolution takes the audio teacher from 0.78 to
# 0.43 validation accuracy; on the BatchNorm it keeps 0.77; docs/mst_distill.md).
mask_layers = dict(
    t_fusion=["fusion.fc1", "encoders.audio.fc"],
    t_audio=["encoders.audio.features.9", "encoders.audio.fc"],
)
expert_names = [f"{teacher}/{path}" for teacher, paths in mask_layers.items() for path in paths]

val_cfg = dict()
test_cfg = dict()
adam = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4))
constant_lr = [dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=1)]
stages = [
    dict(  # stage 1: collaborative initialisation of the student and both teachers
        name="co_training",
        model=dict(type="MSTCoTrainer", student=student, teachers=teachers, temperature=4.0),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-3)),
        param_scheduler=[dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=20, T_max=20, eta_min=1e-5,
                              convert_to_iter_based=True)],
        train_cfg=dict(by_epoch=True, max_epochs=20, val_interval=1),
        default_hooks=dict(checkpoint=dict(save_best=None)),  # stage 2 starts from the last epoch
    ),
    dict(  # stage 2: one MaskNet per masked layer, each pulled towards the (detached) student
        name="mask_training",
        model=dict(type="MSTMaskTrainer", student=student, teachers=teachers, mask_layers=mask_layers,
                   hidden_factor=2, num_heads=3, temperature=4.0),
        optim_wrapper=adam,
        param_scheduler=constant_lr,
        train_cfg=dict(by_epoch=True, max_epochs=5, val_interval=1),
        default_hooks=dict(checkpoint=dict(save_best=None)),
        val_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
        test_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
        custom_hooks=[dict(type="RNGStateHook"), dict(type="BestMaskHook")],
    ),
    dict(  # stage 3: student + GateNet, top-1 expert per sample, teacher outputs cached
        name="routing_distillation",
        model=dict(type="MSTRouterDistiller", student=student, teachers=teachers, mask_layers=mask_layers,
                   hidden_factor=2, num_heads=3, top_k=1, kd_mode="topk", temperature=4.0,
                   load_balance=dict(type="LoadBalanceLoss", mode="kl"), w_task=1.0, w_kl=1.0, w_lb=1.0,
                   kl_decay=dict(factor=0.5, every=30), lb_decay=dict(factor=0.9, every=10), decay_at_epoch0=True,
                   teacher_cache=dict()),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-3)),
        param_scheduler=[dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=30, T_max=30, eta_min=1e-5,
                              convert_to_iter_based=True)],
        train_cfg=dict(by_epoch=True, max_epochs=30, val_interval=1),
        # official: the student is selected by validation loss
        default_hooks=dict(checkpoint=dict(save_best="cross_entropy", rule="less")),
        val_evaluator=dict(type="ClassificationMetric", num_classes=10,
                           items=("accuracy", "macro_f1", "kappa", "cross_entropy")),
        test_evaluator=[
            dict(type="ClassificationMetric", num_classes=10, items=("accuracy", "macro_f1", "kappa", "cross_entropy")),
            dict(type="RouterUsageMetric", expert_names=expert_names),
        ],
        custom_hooks=[dict(type="RNGStateHook"), dict(type="RouterHook"),
                      dict(type="StudentExportHook")],
    ),
]
