# NYU-Depth-V2, 41-class RGB-D segmentation (class 0 = void, ignored); built by data_prep/nyudv2.py
# (see docs/datasets/nyudv2.md). Samples: rgb 3x480x640, depth 1x480x640, label 480x640; the reader
# applies the official input normalisation recorded in meta.json.
dataset_type = "SegmentationDataset"
data_root = "data/nyudv2"
num_classes = 41
ignore_index = 0

train_dataloader = dict(
    batch_size=6,  # official (README: NYU-Depth-V2 batch 6)
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="train"),
)
val_dataloader = dict(
    batch_size=6,
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="val"),
)
test_dataloader = dict(
    batch_size=6,
    num_workers=2,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="test"),
)
# "drop": pixels predicted as void are left out, as the official metrics() does.
val_evaluator = dict(type="SegmentationMetric", num_classes=num_classes, ignore_index=ignore_index,
                     void_predictions="drop", items=("mIoU", "pixel_accuracy", "mean_accuracy", "cross_entropy"))
test_evaluator = val_evaluator
