# Teacher for the shapes-captions demo: the larger dual encoder (xmodal-base-clip), trained with ITC.
#   python tools/train.py configs/retrieval/teacher_shapes.py
_base_ = [
    "../_base_/datasets/shapes_captions.py",
    "../_base_/schedules/retrieval_adamw_20e.py",
    "../_base_/default_runtime.py",
]
model = dict(type="DualEncoder", model_name="xmodal-base-clip")
default_hooks = dict(checkpoint=dict(save_best="mean_recall", rule="greater"))
