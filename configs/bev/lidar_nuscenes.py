# The lidar BEV detector on nuScenes (GPU scale), trained on its own (teacher, or the student baseline).
_base_ = [
    "../_base_/models/bev_nuscenes.py",
    "../_base_/datasets/nuscenes.py",
    "../_base_/schedules/bev_adamw_20e.py",
    "../_base_/default_runtime.py",
]
model = {{_base_.lidar_model}}
default_hooks = dict(checkpoint=dict(save_best="NDS", rule="greater"))
