# Small dual-encoder student + DCD from the trained teacher on the student-mined candidates:
# MSE to the teacher's scores plus the entropy-share-weighted BCE on the teacher's hardest negatives.
# Train the teacher first: python tools/train.py configs/retrieval/teacher_shapes.py
_base_ = ["./cprd_shapes.py"]
model = dict(loss=dict(_delete_=True, type="DCDLoss", temperature=1.0, alpha=0.2, keep=8), loss_weight=1.0)
