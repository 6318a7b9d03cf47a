# BEV detectors for synthetic-scenes: the grid stored in the dataset's meta.json (x 0-38.4 m, y ±19.2 m,
# 0.6 m cells -> 64 x 64); every BEV output (bev_low, bev_high, heatmap, regression) is on that grid.
class_names = ["car", "pedestrian", "bicycle"]
grid = dict(point_cloud_range=(0.0, -19.2, -3.0, 38.4, 19.2, 2.0), cell_size=0.6)
backbone = dict(out_channels=(32, 64), layer_nums=(1, 1), layer_strides=(1, 2), upsample_strides=(1, 2),
                upsample_channels=(32, 32))
head = dict(share_channels=32, head_channels=32)
pillar = dict(out_channels=32, max_points_per_pillar=20)
camera = dict(out_channels=32, depth_bins=(1.0, 45.0, 1.0), widths=(16, 32))
lidar_model = dict(type="BEVDetector", modality="lidar", class_names=class_names, grid=grid, pillar=pillar,
                   backbone=backbone, head=head)
camera_model = dict(type="BEVDetector", modality="camera", class_names=class_names, grid=grid, camera=camera,
                    backbone=backbone, head=head)
fusion_model = dict(type="BEVDetector", modality="fusion", class_names=class_names, grid=grid, pillar=pillar,
                    camera=camera, fusion=dict(out_channels=32), backbone=backbone, head=head)
