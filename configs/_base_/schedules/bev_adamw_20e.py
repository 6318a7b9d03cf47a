max_epochs = 20
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.01),
                     clip_grad=dict(max_norm=35.0))
param_scheduler = [
    dict(type="CosineAnnealingLR", by_epoch=True, begin=0, end=max_epochs, T_max=max_epochs, eta_min=1e-5,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=2)
val_cfg = dict()
test_cfg = dict()
