# The student alone: the tiny dual encoder (xmodal-tiny-clip, 32×32 input) trained with ITC only.
_base_ = [
    "../_base_/datasets/shapes_captions.py",
    "../_base_/schedules/retrieval_adamw_20e.py",
    "../_base_/default_runtime.py",
]
model = dict(type="DualEncoder", model_name="xmodal-tiny-clip")
default_hooks = dict(checkpoint=dict(save_best="mean_recall", rule="greater"))
