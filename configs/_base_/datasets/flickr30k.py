# Flickr30K in xmodal's retrieval format (Karpathy split: 29k/1k/1k images, 5 captions each):
#   python data_prep/flickr30k.py --src flickr30k-images --karpathy dataset_flickr30k.json --out data/flickr30k
dataset_type = "RetrievalDataset"
data_root = "data/flickr30k"
image_size = 224

train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type="DefaultSampler", shuffle=True),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="train", mode="pairs", image_size=image_size),
)
val_dataloader = dict(
    batch_size=256,
    num_workers=8,
    sampler=dict(type="DefaultSampler", shuffle=False),
    collate_fn=dict(type="default_collate"),
    dataset=dict(type=dataset_type, data_root=data_root, split="val", mode="pairs", image_size=image_size),
)
test_dataloader = dict(val_dataloader, dataset=dict(val_dataloader["dataset"], split="test"))
val_evaluator = dict(type="RetrievalMetric", ks=(1, 5, 10))
test_evaluator = val_evaluator
