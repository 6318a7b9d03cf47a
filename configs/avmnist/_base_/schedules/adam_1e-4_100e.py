# Official AV-MNIST training: Adam 1e-4 at a constant rate, 100 epochs.
max_epochs = 100
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4))
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=max_epochs)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
