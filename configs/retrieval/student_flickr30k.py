# GPU scale. The baseline: the same CLIP ViT-B/32 student fine-tuned on Flickr30K with ITC only.
_base_ = [
    "../_base_/datasets/flickr30k.py",
    "../_base_/schedules/retrieval_finetune_5e.py",
    "../_base_/default_runtime.py",
]
model = dict(type="DualEncoder", model_name="ViT-B-32", pretrained="checkpoints/open_clip_vit_b32_laion2b.bin")
default_hooks = dict(checkpoint=dict(save_best="mean_recall", rule="greater"))
