# Image-only two-head student (DHO): the main head learns from labels, the auxiliary head from the
# image+audio fusion teacher; predictions mix both heads with α, β chosen on the validation split.
# Train the teacher first: python tools/train.py configs/digits_av/teacher_fusion.py
_base_ = ["./kd_image_from_fusion.py"]
model = dict(
    student=dict(type="DualHeadClassifier"),
    losses=[dict(type="DHOLoss", weight=1.0, student="logits_aux", teacher="t_fusion.logits", temperature=2.0,
                 lam=0.5, inputs=dict(main_logits="student.logits_main"))],
    task_loss_weight=0.0,  # DHOLoss holds the cross-entropy term
)
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook"), dict(type="DualHeadCombinerHook")]
