# synthetic-scenes: the embedded SYNTHETIC BEV set (ray-cast LiDAR + one rendered front camera, 3 classes),
# built into ~/.cache/xmodal (or $XMODAL_DATA) on first use; see xmodal/data/synthetic_scenes.py.
dataset_type = "SyntheticScenesDataset"
data_seed = 0

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="detection_collate"),
    dataset=dict(type=dataset_type, split="train", seed=data_seed),
)
val_dataloader = dict(
    batch_size=16,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="detection_collate"),
    dataset=dict(type=dataset_type, split="val", seed=data_seed, with_info=True),
)
test_dataloader = dict(val_dataloader, dataset=dict(val_dataloader["dataset"], split="test"))
val_evaluator = dict(type="NuScenesMetric", class_names=["car", "pedestrian", "bicycle"])
test_evaluator = val_evaluator
