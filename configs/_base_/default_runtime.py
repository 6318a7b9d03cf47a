default_scope = "xmodal"

default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=20),
    param_scheduler=dict(type="ParamSchedulerHook"),
    # best_*.pth is chosen on the validation split; tools/test.py reports the test split.
    checkpoint=dict(type="CheckpointHook", interval=1, max_keep_ckpts=1, save_best="accuracy", rule="greater"),
    sampler_seed=dict(type="DistSamplerSeedHook"),
)
custom_hooks = [dict(type="RNGStateHook")]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="nccl"),
)

vis_backends = [dict(type="LocalVisBackend"), dict(type="TensorboardVisBackend")]
visualizer = dict(type="Visualizer", vis_backends=vis_backends)
log_processor = dict(by_epoch=True, window_size=10)
log_level = "INFO"

load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
