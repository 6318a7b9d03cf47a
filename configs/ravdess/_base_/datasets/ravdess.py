# RAVDESS speech, 8 emotions, built by data_prep/ravdess.py (see docs/datasets/ravdess.md).
# Samples: video (15, 3, 224, 224) face crops, audio (15, 156) MFCCs; 1,440 clips, official split 864/288/288.
dataset_type = "PairedDataset"
data_root = "data/ravdess"
# The converter rejects NaN/Inf while writing; scanning the 13 GB video array on every open of each
# split would cost a minute or more, so the reader's scan is off.
dataset_args = dict(type=dataset_type, data_root=data_root, check_finite=False)

train_dataloader = dict(
    batch_size=32,  # official (README: RAVDESS batch 32)
    num_workers=4,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="train"),
)
val_dataloader = dict(
    batch_size=32,
    num_workers=4,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="val"),
)
test_dataloader = dict(
    batch_size=32,
    num_workers=4,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="test"),
)
val_evaluator = dict(type="ClassificationMetric", num_classes=8, items=("accuracy", "macro_f1", "kappa", "cross_entropy"))
test_evaluator = val_evaluator
