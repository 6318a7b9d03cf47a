# The fusion BEV detector on synthetic-scenes, trained on its own (teacher, or the student baseline).
_base_ = [
    "../_base_/models/bev_synthetic.py",
    "../_base_/datasets/synthetic_scenes.py",
    "../_base_/schedules/bev_adamw_20e.py",
    "../_base_/default_runtime.py",
]
model = {{_base_.fusion_model}}
default_hooks = dict(checkpoint=dict(save_best="NDS", rule="greater"))
