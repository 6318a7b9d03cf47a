# An mmdet3d CenterPoint-pillar detector on synthetic-scenes through the optional bridge
# (xmodal.models.bev.MMDet3DDetector; install the stack with `bash tools/install_det3d.sh`).
# Same grid as the native detectors (x 0-38.4 m, y ±19.2 m, 0.6 m cells -> 64 x 64), so its BEV maps
# line up with theirs: bev_low = the scattered pillars (32 channels, as the native camera's bev_low),
# bev_high = the SECOND-FPN output. Use it alone (tools/train.py) or as a UniDistill teacher / student.
_base_ = [
    "../_base_/models/bev_synthetic.py",
    "../_base_/datasets/synthetic_scenes.py",
    "../_base_/schedules/bev_adamw_20e.py",
    "../_base_/default_runtime.py",
]
pcr = [0.0, -19.2, -3.0, 38.4, 19.2, 2.0]
voxel_size = [0.6, 0.6, 5.0]
norm = dict(type="BN", eps=1e-3, momentum=0.01)
centerpoint_pillar = dict(
    type="CenterPoint",
    data_preprocessor=dict(type="Det3DDataPreprocessor", voxel=True, voxel_layer=dict(
        max_num_points=20, point_cloud_range=pcr, voxel_size=voxel_size, max_voxels=(8000, 8000))),
    pts_voxel_encoder=dict(type="PillarFeatureNet", in_channels=5, feat_channels=[32], with_distance=False,
                           voxel_size=voxel_size, point_cloud_range=pcr, legacy=False,
                           norm_cfg=dict(type="BN1d", eps=1e-3, momentum=0.01)),
    pts_middle_encoder=dict(type="PointPillarsScatter", in_channels=32, output_shape=(64, 64)),
    pts_backbone=dict(type="SECOND", in_channels=32, out_channels=[32, 64], layer_nums=[1, 1], layer_strides=[1, 2],
                      norm_cfg=norm, conv_cfg=dict(type="Conv2d", bias=False)),
    pts_neck=dict(type="SECONDFPN", in_channels=[32, 64], out_channels=[32, 32], upsample_strides=[1, 2],
                  norm_cfg=norm, upsample_cfg=dict(type="deconv", bias=False), use_conv_for_no_stride=True),
    pts_bbox_head=dict(
        type="CenterHead", in_channels=64,
        tasks=[dict(num_class=1, class_names=["car"]), dict(num_class=2, class_names=["pedestrian", "bicycle"])],
        common_heads=dict(reg=(2, 2), height=(1, 2), dim=(3, 2), rot=(2, 2), vel=(2, 2)), share_conv_channel=32,
        bbox_coder=dict(type="CenterPointBBoxCoder", post_center_range=[-5.0, -25.0, -5.0, 45.0, 25.0, 5.0],
                        max_num=100, score_threshold=0.1, out_size_factor=1, voxel_size=voxel_size[:2],
                        code_size=9, pc_range=pcr[:2]),
        separate_head=dict(type="SeparateHead", init_bias=-2.19, final_kernel=3),
        loss_cls=dict(type="mmdet.GaussianFocalLoss", reduction="mean"),
        loss_bbox=dict(type="mmdet.L1Loss", reduction="mean", loss_weight=0.25), norm_bbox=True),
    train_cfg=dict(pts=dict(grid_size=[64, 64, 1], voxel_size=voxel_size, out_size_factor=1, dense_reg=1,
                            gaussian_overlap=0.1, max_objs=100, min_radius=2, point_cloud_range=pcr,
                            code_weights=[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2])),
    test_cfg=dict(pts=dict(post_center_limit_range=[-5.0, -25.0, -5.0, 45.0, 25.0, 5.0], max_per_img=100,
                           max_pool_nms=False, min_radius=[4, 0.175], score_threshold=0.1, out_size_factor=1,
                           voxel_size=voxel_size[:2], nms_type="circle", pre_max_size=1000, post_max_size=83,
                           nms_thr=0.2, pc_range=pcr[:2])),
)
model = dict(type="MMDet3DDetector", detector=centerpoint_pillar, class_names={{_base_.class_names}},
             features=dict(bev_low="pts_middle_encoder", bev_high="pts_neck"))
default_hooks = dict(checkpoint=dict(save_best="NDS", rule="greater"))
