# Official CrisisMMD-V2 schedule (main-T.py / main-S.py, README): Adam lr 5e-3 at a constant rate
# (the cosine scheduler is built but never stepped), 100 epochs. The official checkpoint is the one
# with the lowest validation loss: each top-level config sets save_best="cross_entropy", rule="less".
max_epochs = 100
optim_wrapper = dict(type="OptimWrapper", optimizer=dict(type="Adam", lr=5e-3))
param_scheduler = [dict(type="ConstantLR", factor=1.0, by_epoch=True, begin=0, end=max_epochs)]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
