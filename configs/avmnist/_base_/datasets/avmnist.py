# AV-MNIST, built by data_prep/avmnist.py (docs/datasets/avmnist.md): image 1x28x28, audio 1x112x112,
# 10 classes, the official MST-Distill 60/20/20 split. Official batch size 512.
dataset_type = "PairedDataset"
data_root = "data/avmnist"
loader = dict(batch_size=512, num_workers=2, collate_fn=dict(type="default_collate"))
train_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=True),
                        dataset=dict(type=dataset_type, data_root=data_root, split="train"))
val_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                      dataset=dict(type=dataset_type, data_root=data_root, split="val"))
test_dataloader = dict(**loader, sampler=dict(type="DefaultSampler", shuffle=False),
                       dataset=dict(type=dataset_type, data_root=data_root, split="test"))
metric_items = ("accuracy", "macro_f1", "kappa", "cross_entropy")
val_evaluator = dict(type="ClassificationMetric", num_classes=10, items=metric_items)
test_evaluator = val_evaluator
