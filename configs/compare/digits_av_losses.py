# Loss comparison on digits-av: the image-only student distilled with each loss from the same
# teachers (the image+audio fusion teacher; the audio-only cross-modal teacher where named).
#   python tools/compare.py configs/compare/digits_av_losses.py --seeds 3
# Each entry replaces the losses of `student_config` (a Distiller config); `teachers` are trained
# once per seed from their configs. A loss that replaces cross-entropy sets task_loss_weight=0.
student_config = "configs/digits_av/kd_image_from_fusion.py"
teachers = dict(t_fusion="configs/digits_av/teacher_fusion.py", t_audio="configs/digits_av/student_audio.py")
epochs = 30
kd = dict(type="KDLoss", student="logits", teacher="t_fusion.logits", temperature=4.0)
entries = [
    dict(name="no_kd", losses=[]),
    dict(name="kd", losses=[kd]),
    dict(name="kd_audio_teacher", losses=[dict(kd, teacher="t_audio.logits")]),
    dict(name="dkd", losses=[dict(type="DKDLoss", student="logits", teacher="t_fusion.logits", temperature=4.0,
                                  alpha=1.0, beta=8.0)],
         hooks=[dict(type="DistillWeightWarmupHook", terms=["dkd_0"], warmup_epochs=20)]),
    dict(name="pld", losses=[dict(type="PLDLoss", student="logits", teacher="t_fusion.logits", tau=1.0)],
         task_loss_weight=0.0),
    # feature losses on the embeddings: student 84-d (LeNet-5), fusion teacher 128-d
    dict(name="fitnet", losses=[dict(type="FitNetLoss", student="embedding", teacher="t_fusion.embedding",
                                     connector=dict(type="LinearConnector", in_dim=84, out_dim=128))]),
    dict(name="rkd", losses=[dict(type="RKDLoss", student="embedding", teacher="t_fusion.embedding",
                                  distance_weight=1.0, angle_weight=2.0)]),
]
entries += [
    dict(name="taid", losses=[dict(type="TAIDLoss", name="taid", student="logits", teacher="t_fusion.logits")],
         hooks=[dict(type="TAIDHook", terms=["taid"], t_start=0.4, t_end=1.0, alpha=5e-4, beta=0.99)]),
    # two-head student: the auxiliary head takes the teacher, the main head the labels
    dict(name="dho", student=dict(type="DualHeadClassifier"), task_loss_weight=0.0,
         losses=[dict(type="DHOLoss", student="logits_aux", teacher="t_fusion.logits", temperature=2.0, lam=0.5,
                      inputs=dict(main_logits="student.logits_main"))],
         hooks=[dict(type="DualHeadCombinerHook")]),
    dict(name="dual_head_kd", student=dict(type="DualHeadClassifier"),
         losses=[dict(type="DualHeadKDLoss", student="logits_aux", teacher="t_fusion.logits", temperature=2.0)]),
    # CRD on the embeddings (student 84-d, fusion teacher 128-d); num_data = the digits-av train split size
    dict(name="crd", losses=[dict(type="CRDLoss", student="embedding", teacher="t_fusion.embedding", weight=0.8,
                                  student_dim=84, teacher_dim=128, num_data=1078, inputs=dict(index="batch.index"))]),
]
entries += [
    # C2KD: proxy heads owned by the loss on the embeddings (student 84-d, fusion teacher 128-d), 10 classes
    dict(name="c2kd", losses=[dict(type="C2KDLoss", student="embedding", teacher="t_fusion.embedding",
                                   student_dim=84, teacher_dim=128, num_classes=10, temperature=1.0,
                                   krc_threshold=0.0,
                                   inputs=dict(teacher_logits="t_fusion.logits", student_logits="student.logits"))]),
    # MAD: teacher-entropy-weighted Gram matrix MSE; the Gram is B x B, so no connector
    dict(name="mad", losses=[dict(type="MADLoss", student="embedding", teacher="t_fusion.embedding",
                                  inputs=dict(teacher_logits="t_fusion.logits"))]),
]
entries += [
    # SinKD rides on KD, as in the official "kd+sinkhorn" runs
    dict(name="kd_sinkd", losses=[kd, dict(type="SinKDLoss", student="logits", teacher="t_fusion.logits",
                                          temperature=2.0, epsilon=0.1, iterations=20)]),
    # DIST replaces KD's KL; weight 2 as in the official recipes (cross-entropy weight 1)
    dict(name="dist", losses=[dict(type="DISTLoss", weight=2.0, student="logits", teacher="t_fusion.logits",
                                   tau=1.0, beta=1.0, gamma=1.0)]),
]
