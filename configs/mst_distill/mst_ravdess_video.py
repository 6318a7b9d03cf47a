# MST-Distill on RAVDESS: video-only student (VisualBranchNet), mixture of specialised teachers built
# from the video+audio fusion teacher (DSCNN-I) and the audio-only cross-modal teacher (AudioBranchNet).
# Official run: main-MST-Distill.py --database RAVDESS --batch_size 32 --mode m1 --Tmodel DSCNN-I
# --Smodel VisualBranchNet --AUXmodel AudioBranchNet
#   python tools/train.py configs/mst_distill/mst_ravdess_video.py            # stages 1 -> 3
#   python tools/test.py configs/mst_distill/mst_ravdess_video.py work_dirs/mst_ravdess_video/stage3
# Official hyper-parameters (main-MST-Distill.py defaults, README): batch 32; stage 1 one epoch, Adam
# 1e-4; stage 2 one epoch, Adam 1e-4; stage 3 100 epochs, Adam 1e-4 at a constant rate; MaskNet
# factor 2 / 3 heads; top-1 routing; KL load balance; w_lb x0.9 / 10 epochs, w_kl x0.5 / 30 epochs.
# One departure from the official run: stack_masks=False (stage 3), the paper's one mask per expert.
# The official code's stage-3 masks pile up, so 2 of its 4 experts differ from these: t_fusion/fusion.fc2 and
# t_audio/encoders.audio.fc2 there also keep their teacher's first mask on. stack_masks=True reproduces them.
_base_ = [
    "../ravdess/_base_/models/ravdess.py",
    "../ravdess/_base_/datasets/ravdess.py",
    "../_base_/default_runtime.py",
]
student = {{_base_.video_model}}
teachers = dict(t_fusion=dict(model={{_base_.fusion_model}}), t_audio=dict(model={{_base_.audio_model}}))
# get_MSTmodules (RAVDESS): teacher DSCNN-I fc1 (320,), fc2 (160,); auxiliary AudioBranchNet fc1 (320,), fc2 (160,)
mask_layers = dict(
    t_fusion=["fusion.fc1", "fusion.fc2"],
    t_audio=["encoders.audio.fc1", "encoders.audio.fc2"],
)
expert_names = [f"{teacher}/{path}" for teacher, paths in mask_layers.items() for path in paths]
metric_items = ("accuracy", "macro_f1", "kappa", "cross_entropy")

val_cfg = dict()
test_cfg = dict()
adam = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4))
constant_lr = [dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=1)]
stages = [
    dict(  # stage 1: collaborative initialisation of the student and both teachers
        name="co_training",
        model=dict(type="MSTCoTrainer", student=student, teachers=teachers, temperature=4.0),
        optim_wrapper=adam,  # official s1_lr
        param_scheduler=constant_lr,
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),  # official epochs_s1
        default_hooks=dict(checkpoint=dict(save_best=None)),  # stage 2 starts from the last epoch
    ),
    dict(  # stage 2: one MaskNet per masked layer, each pulled towards the (detached) student
        name="mask_training",
        model=dict(type="MSTMaskTrainer", student=student, teachers=teachers, mask_layers=mask_layers,
                   hidden_factor=2, num_heads=3, temperature=4.0),
        optim_wrapper=adam,  # official s2_lr
        param_scheduler=constant_lr,
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),  # official epochs_s2
        default_hooks=dict(checkpoint=dict(save_best=None)),
        val_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
        test_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
        custom_hooks=[dict(type="RNGStateHook"), dict(type="BestMaskHook")],
    ),
    dict(  # stage 3: student + GateNet, top-1 expert per sample, teacher outputs cached
        name="routing_distillation",
        # stack_masks=False: one mask per expert (paper); the official code piles them up (True)
        model=dict(type="MSTRouterDistiller", student=student, teachers=teachers, stack_masks=False,
                   mask_layers=mask_layers,
                   hidden_factor=2, num_heads=3, top_k=1, kd_mode="topk", temperature=4.0,
                   load_balance=dict(type="LoadBalanceLoss", mode="kl"), w_task=1.0, w_kl=1.0, w_lb=1.0,
                   kl_decay=dict(factor=0.5, every=30), lb_decay=dict(factor=0.9, every=10), decay_at_epoch0=True,
                   teacher_cache=dict()),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4)),  # official lr (README)
        param_scheduler=[dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=100)],
        train_cfg=dict(by_epoch=True, max_epochs=100, val_interval=1),  # official epochs
        # official: the student is selected by validation loss
        default_hooks=dict(checkpoint=dict(save_best="cross_entropy", rule="less")),
        val_evaluator=dict(type="ClassificationMetric", num_classes=8, items=metric_items),
        test_evaluator=[
            dict(type="ClassificationMetric", num_classes=8, items=metric_items),
            dict(type="RouterUsageMetric", expert_names=expert_names),
        ],
        custom_hooks=[dict(type="RNGStateHook"), dict(type="RouterHook"),
                      dict(type="StudentExportHook")],
    ),
]
