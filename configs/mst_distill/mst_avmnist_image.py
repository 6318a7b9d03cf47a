# MST-Distill on AV-MNIST, the paper's main benchmark: image-only LeNet-5 student, experts from the
# CNN-I fusion teacher and the ThreeLayerCNN-A audio (cross-modal) teacher. Official run:
# main-MST-Distill.py --database AV-MNIST --batch_size 512 --mode m1 --Tmodel CNN-I --Smodel LeNet5
# --AUXmodel ThreeLayerCNN-A
#   python tools/train.py configs/mst_distill/mst_avmnist_image.py            # stages 1 -> 3
#   python tools/test.py configs/mst_distill/mst_avmnist_image.py work_dirs/mst_avmnist_image
# Official hyper-parameters throughout: batch 512; stage 1 one epoch, stage 2 one epoch, stage 3 100
# epochs, each Adam 1e-4 at a constant rate; MaskNet factor 2 / 3 heads; top-1 routing; KL load
# balance; w_lb x0.9 / 10 epochs, w_kl x0.5 / 30 epochs; the student with the lowest validation loss.
# Memory: the mask on the 596-wide concatenation has 106 M parameters (docs/benchmarks.md).
# One departure from the official run: stack_masks=False (stage 3), the paper's one mask per expert.
# The official code's stage-3 masks pile up, so 2 of its 4 experts differ from these: t_fusion/fusion.fc1 and
# t_audio/encoders.audio.conv3 there also keep their teacher's first mask on. stack_masks=True reproduces them.
_base_ = [
    "../avmnist/_base_/models/avmnist.py",
    "../avmnist/_base_/datasets/avmnist.py",
    "../_base_/default_runtime.py",
]
student = {{_base_.image_model}}
teachers = dict(t_fusion=dict(model={{_base_.fusion_model}}), t_audio=dict(model={{_base_.audio_model}}))
# official get_MSTmodules for an image student: CNN-I ['concat_identity' (596), 'fc1' (298)],
# ThreeLayerCNN-A ['conv2' (64x56x56), 'conv3' (128x28x28)]
mask_layers = dict(
    t_fusion=["fusion.concat", "fusion.fc1"],
    t_audio=["encoders.audio.conv2", "encoders.audio.conv3"],
)
mask_shapes = dict(t_fusion={"fusion.concat": [596]})  # an identity: its width cannot be read from the module
expert_names = [f"{teacher}/{path}" for teacher, paths in mask_layers.items() for path in paths]
metric_items = ("accuracy", "macro_f1", "kappa", "cross_entropy")

val_cfg = dict()
test_cfg = dict()
adam = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4))
constant_lr = [dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=1)]
masknet = dict(mask_layers=mask_layers, mask_shapes=mask_shapes, hidden_factor=2, num_heads=3)
stages = [
    dict(
        name="co_training",
        model=dict(type="MSTCoTrainer", student=student, teachers=teachers, temperature=4.0),
        optim_wrapper=adam,
        param_scheduler=constant_lr,
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
        default_hooks=dict(checkpoint=dict(save_best=None)),
    ),
    dict(
        name="mask_training",
        model=dict(type="MSTMaskTrainer", student=student, teachers=teachers, temperature=4.0, **masknet),
        optim_wrapper=adam,
        param_scheduler=constant_lr,
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
        default_hooks=dict(checkpoint=dict(save_best=None)),
        val_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
        test_evaluator=dict(_delete_=True, type="MaskKLMetric", expert_names=expert_names),
        custom_hooks=[dict(type="RNGStateHook"), dict(type="BestMaskHook")],
    ),
    dict(
        name="routing_distillation",
        # stack_masks=False: one mask per expert (paper); the official code piles them up (True)
        model=dict(type="MSTRouterDistiller", student=student, teachers=teachers, stack_masks=False,
                   top_k=1, kd_mode="topk",
                   temperature=4.0, load_balance=dict(type="LoadBalanceLoss", mode="kl"), w_task=1.0, w_kl=1.0,
                   w_lb=1.0, kl_decay=dict(factor=0.5, every=30), lb_decay=dict(factor=0.9, every=10),
                   decay_at_epoch0=True, **masknet,
                   teacher_cache=dict()),
        optim_wrapper=adam,
        param_scheduler=[dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=100)],
        train_cfg=dict(by_epoch=True, max_epochs=100, val_interval=1),
        default_hooks=dict(checkpoint=dict(save_best="cross_entropy", rule="less")),
        test_evaluator=[
            dict(type="ClassificationMetric", num_classes=10, items=metric_items),
            dict(type="RouterUsageMetric", expert_names=expert_names),
        ],
        custom_hooks=[dict(type="RNGStateHook"), dict(type="RouterHook"),
                      dict(type="StudentExportHook")],
    ),
]
