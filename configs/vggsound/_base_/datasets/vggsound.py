# VGGSound-50k, 141 classes, built by data_prep/vggsound.py (see docs/datasets/vggsound.md).
# Samples: visual (10, 7, 7, 512) VGG-19 segment maps, audio (10, 128) VGGish segment embeddings.
dataset_type = "PairedDataset"
data_root = "data/vggsound"
# The converter rejects NaN/Inf while writing; scanning ~50 GB of visual features on every open
# (train, val and test each) would cost minutes, so the reader's scan is off.
dataset_args = dict(type=dataset_type, data_root=data_root, check_finite=False)

train_dataloader = dict(
    batch_size=512,  # official (README: VGGSound-50k batch 512)
    num_workers=4,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="train"),
)
val_dataloader = dict(
    batch_size=512,
    num_workers=4,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="val"),
)
test_dataloader = dict(
    batch_size=512,
    num_workers=4,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(dataset_args, split="test"),
)
val_evaluator = dict(type="ClassificationMetric", num_classes=141,
                     items=("accuracy", "macro_f1", "kappa", "cross_entropy"))
test_evaluator = val_evaluator
