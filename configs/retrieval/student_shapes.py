# The student alone: the small dual encoder (xmodal-small-clip: 2-layer ViT and text transformer, width 64)
# trained with ITC only.
_base_ = [
    "../_base_/datasets/shapes_captions.py",
    "../_base_/schedules/retrieval_adamw_20e.py",
    "../_base_/default_runtime.py",
]
model = dict(type="DualEncoder", model_name="xmodal-small-clip")
default_hooks = dict(checkpoint=dict(save_best="mean_recall", rule="greater"))
