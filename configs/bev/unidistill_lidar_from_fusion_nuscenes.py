# UniDistill lidar <- fusion on nuScenes (GPU scale): the lidar BEV detector learns from the
# trained fusion detector at the 9 keypoints of every GT box: feature (low-level BEV), relation (9 x 9
# keypoint similarities of high-level BEV) and response (heads) losses, weights 10 / 1 / 10
# (xmodal.distill.unidistill.UNIDISTILL_WEIGHTS["lidar_from_fusion"], from the official configs).
# Train the teacher first: python tools/train.py configs/bev/fusion_nuscenes.py
_base_ = ["./lidar_nuscenes.py"]
where = dict(bev_range={{_base_.grid.point_cloud_range}}, cell_size={{_base_.grid.cell_size}}, stride=1)
model = dict(
    _delete_=True,
    type="Distiller",
    student={{_base_.lidar_model}},
    # checkpoint: a file, or a work dir (its best_*.pth is used)
    teachers=dict(t_fusion=dict(config="configs/bev/fusion_nuscenes.py", checkpoint="work_dirs/fusion_nuscenes")),
    losses=[
        dict(type="UniDistillFeatureLoss", name="feature", weight=10.0, student="bev_low", teacher="t_fusion.bev_low",
             inputs=dict(gt_boxes="batch.gt_boxes"), **where),
        dict(type="UniDistillRelationLoss", name="relation", weight=1.0, student="bev_high", teacher="t_fusion.bev_high",
             inputs=dict(gt_boxes="batch.gt_boxes"), **where),
        dict(type="UniDistillResponseLoss", name="response", weight=10.0, student="heatmap", teacher="t_fusion.heatmap",
             inputs=dict(gt_boxes="batch.gt_boxes", student_regression="student.regression",
                         teacher_regression="t_fusion.regression"), **where),
    ],
    task_loss_weight=1.0,
)
custom_hooks = [dict(type="RNGStateHook"), dict(type="StudentExportHook")]
