# GPU scale. As cprd_flickr30k.py with the DCD loss (T = 1, alpha = 0.2, top-8 of the teacher's candidates).
_base_ = ["./cprd_flickr30k.py"]
model = dict(loss=dict(_delete_=True, type="DCDLoss", temperature=1.0, alpha=0.2, keep=8))
