# A small BLIP-style cross-encoder teacher for the shapes-captions demo, trained from scratch with
# ITC + ITM (one hard negative per image and per caption). Slower to distil from than the dual-encoder
# teacher (one text pass per scored pair): cprd_shapes.py with
#   --cfg-options model.teacher.config=configs/retrieval/teacher_cross_encoder_shapes.py \
#                 model.teacher.checkpoint=work_dirs/teacher_cross_encoder_shapes
_base_ = ["./teacher_shapes.py"]
blip = dict(
    vision_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                       image_size=64, patch_size=8),
    text_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4,
                     vocab_size=49408, max_position_embeddings=64, encoder_hidden_size=128),
    projection_dim=128,
    image_text_hidden_size=128,
)
model = dict(_delete_=True, type="CrossEncoder", config=blip, tokenizer=dict(type="clip", context_length=32))
