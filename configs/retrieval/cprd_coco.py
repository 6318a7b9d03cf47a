# GPU scale. CPRD on MS-COCO (Karpathy split) with the COCO BLIP ITM teacher (Salesforce/blip-itm-base-coco).
#   python data_prep/coco_captions.py --src coco --karpathy dataset_coco.json --out data/coco_captions
_base_ = ["./cprd_flickr30k.py"]
data_root = "data/coco_captions"
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
model = dict(teacher=dict(model=dict(pretrained="checkpoints/blip-itm-base-coco")))
