# nuScenes in xmodal's detection format (GPU scale):
#   python data_prep/nuscenes.py --root /data/nuscenes --version v1.0-trainval --split-file split.json --out data/nuscenes
# docs/datasets/nuscenes.md. Images resized to 256 x 704 (the usual BEV-detector input; intrinsics follow).
dataset_type = "DetectionDataset"
data_root = "data/nuscenes"
image_size = (256, 704)

train_dataloader = dict(
    batch_size=4,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="detection_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="train", image_size=image_size),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=8,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="detection_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="val", image_size=image_size, with_info=True),
)
test_dataloader = val_dataloader  # nuScenes' test split has no public labels: report val, as papers do
# the nuScenes detection classes and the official class ranges (ego distance, metres)
val_evaluator = dict(
    type="NuScenesMetric",
    class_range=dict(car=50, truck=50, bus=50, trailer=50, construction_vehicle=50, pedestrian=40, motorcycle=40,
                     bicycle=40, traffic_cone=30, barrier=30),
)
test_evaluator = val_evaluator
