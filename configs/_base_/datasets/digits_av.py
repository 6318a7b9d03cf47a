# digits-av: built into ~/.cache/xmodal (or $XMODAL_DATA) on first use; see xmodal/data/digits_av.py.
dataset_type = "DigitsAVDataset"
data_seed = 0

train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, split="train", seed=data_seed),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, split="val", seed=data_seed),
)
test_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, split="test", seed=data_seed),
)
val_evaluator = dict(type="ClassificationMetric", num_classes=10)
test_evaluator = val_evaluator
