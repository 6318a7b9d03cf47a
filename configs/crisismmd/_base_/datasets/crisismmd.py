# CrisisMMD-V2, 8 humanitarian classes, built by data_prep/crisismmd.py (see docs/datasets/crisismmd.md).
# Samples: image (2048,) ResNet-50 features, text (768,) BERTweet pooled features.
dataset_type = "PairedDataset"
data_root = "data/crisismmd"
dataset_args = dict(type=dataset_type, data_root=data_root)

train_dataloader = dict(
    batch_size=512,  # official (README: CrisisMMD-V2 batch 512)
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="train"),
)
val_dataloader = dict(
    batch_size=512,
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="val"),
)
test_dataloader = dict(
    batch_size=512,
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="test"),
)
val_evaluator = dict(type="ClassificationMetric", num_classes=8,
                     items=("accuracy", "macro_f1", "kappa", "cross_entropy"))
test_evaluator = val_evaluator
