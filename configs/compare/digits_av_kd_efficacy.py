# Why KD does not help at full labels on digits-av (docs/kd_efficacy.md): a temperature × weight sweep of
# vanilla KD from the image+audio fusion teacher, and the same-modality control (a larger image-only
# teacher), every student the LeNet-5 image model with every training label.
#   python tools/compare.py configs/compare/digits_av_kd_efficacy.py --seeds 3
student_config = "configs/digits_av/kd_image_from_fusion.py"
teachers = dict(t_fusion="configs/digits_av/teacher_fusion.py", t_image="configs/digits_av/teacher_image_wide.py")
epochs = 30
entries = [dict(name="no_kd", losses=[])]
entries += [
    dict(name=f"kd_T{t}_w{w}", losses=[dict(type="KDLoss", weight=w, student="logits", teacher="t_fusion.logits",
                                            temperature=float(t))])
    for t in (1, 2, 4, 8) for w in (0.1, 0.5, 1.0)
]
entries += [
    dict(name="kd_image_teacher_T4_w1", losses=[dict(type="KDLoss", weight=1.0, student="logits",
                                                     teacher="t_image.logits", temperature=4.0)]),
]
