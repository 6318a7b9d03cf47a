# Image-only student distilled from two teachers at once, the average of their KD terms: the
# image+audio fusion teacher and the audio-only (cross-modal) teacher. The multi-teacher baseline
# for MST-Distill (configs/mst_distill/mst_digits_image.py), which routes between the same kinds.
# Train the teachers first:
#   python tools/train.py configs/digits_av/teacher_fusion.py
#   python tools/train.py configs/digits_av/student_audio.py
_base_ = ["./kd_image_from_fusion.py"]
model = dict(
    teachers=dict(
        t_fusion=dict(config="configs/digits_av/teacher_fusion.py", checkpoint="work_dirs/teacher_fusion"),
        t_audio=dict(config="configs/digits_av/student_audio.py", checkpoint="work_dirs/student_audio"),
    ),
    losses=[
        dict(type="KDLoss", weight=0.5, student="logits", teacher="t_fusion.logits", temperature=4.0),
        dict(type="KDLoss", weight=0.5, student="logits", teacher="t_audio.logits", temperature=4.0),
    ],
)
