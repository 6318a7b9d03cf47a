# GPU scale. CLIP ViT-B/32 dual-encoder student fine-tuned on Flickr30K with ITC + CPRD from the BLIP ITM
# cross-encoder. Nothing is downloaded: both models are local files.
#   student: an open_clip ViT-B-32 checkpoint file (e.g. the laion2b_s34b_b79k open_clip_pytorch_model.bin)
#   teacher: a save_pretrained directory of transformers' BlipForImageTextRetrieval (Salesforce/blip-itm-base-flickr)
#   python tools/train.py configs/retrieval/cprd_flickr30k.py
#   python tools/eval_retrieval.py configs/retrieval/cprd_flickr30k.py work_dirs/cprd_flickr30k
_base_ = [
    "../_base_/datasets/flickr30k.py",
    "../_base_/schedules/retrieval_finetune_5e.py",
    "../_base_/default_runtime.py",
]
student_weights = "checkpoints/open_clip_vit_b32_laion2b.bin"
teacher_dir = "checkpoints/blip-itm-base-flickr"
model = dict(
    type="RetrievalDistiller",
    student=dict(type="DualEncoder", model_name="ViT-B-32", pretrained=student_weights),
    # the cross-encoder loads its own published weights; it scores B x (1 + K) pairs per direction
    teacher=dict(model=dict(type="CrossEncoder", pretrained=teacher_dir, tokenizer=dict(type="hf", context_length=35))),
    loss=dict(type="CPRDLoss", tau=1.0),
    num_negatives=15,
    loss_weight=1.0,
    task_loss_weight=1.0,
)
default_hooks = dict(checkpoint=dict(save_best="mean_recall", rule="greater"))
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook")]
