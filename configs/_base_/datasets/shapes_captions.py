# shapes-captions: the embedded SYNTHETIC image-caption set (rendered shapes, generated captions), built
# into ~/.cache/xmodal (or $XMODAL_DATA) on first use; see xmodal/data/shapes_captions.py.
# Training and evaluation iterate over captions ("pairs": one caption with its image); the metric
# deduplicates the repeated image embeddings.
dataset_type = "ShapesCaptionsDataset"
data_seed = 0
image_size = 64

train_dataloader = dict(
    batch_size=64,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, split="train", mode="pairs", image_size=image_size, seed=data_seed),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, split="val", mode="pairs", image_size=image_size, seed=data_seed),
)
test_dataloader = dict(
    batch_size=256,
    num_workers=0,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, split="test", mode="pairs", image_size=image_size, seed=data_seed),
)
val_evaluator = dict(type="RetrievalMetric", ks=(1, 5, 10))
test_evaluator = val_evaluator
