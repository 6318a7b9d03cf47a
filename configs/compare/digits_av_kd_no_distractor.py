# The test of "the fusion teacher's soft labels carry what only the audio shows" (docs/kd_efficacy.md): the
# full-label KD comparison on a digits-av variant whose audio has no distractor word (-120 dB: silent), so
# the audio carries the digit's name, a voice and noise only. Every run, teachers included, uses the variant
# (its own cached build).
#   python tools/compare.py configs/compare/digits_av_kd_no_distractor.py --seeds 3
_base_ = ["./digits_av_kd_efficacy.py"]
dataset = dict(distractor_db=(-120.0, -120.0))
teachers = dict(_delete_=True, t_fusion="configs/digits_av/teacher_fusion.py")
entries = [
    dict(name="no_kd", losses=[]),
    dict(name="kd_T1_w0.1", losses=[dict(type="KDLoss", weight=0.1, student="logits", teacher="t_fusion.logits",
                                         temperature=1.0)]),
    dict(name="kd_T4_w1.0", losses=[dict(type="KDLoss", weight=1.0, student="logits", teacher="t_fusion.logits",
                                         temperature=4.0)]),
]
