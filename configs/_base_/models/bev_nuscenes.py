# BEV detectors for nuScenes (UniDistill's grid: x, y in [-54, 54] m, 0.6 m BEV cells -> 180 x 180; GPU scale).
class_names = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
               "pedestrian", "traffic_cone"]
grid = dict(point_cloud_range=(-54.0, -54.0, -5.0, 54.0, 54.0, 3.0), cell_size=0.6)
backbone = dict(out_channels=(128, 256), layer_nums=(3, 5), layer_strides=(1, 2), upsample_strides=(1, 2),
                upsample_channels=(128, 128))
head = dict(share_channels=64, head_channels=64)
pillar = dict(out_channels=64, max_points_per_pillar=20)
camera = dict(out_channels=64, depth_bins=(2.0, 58.0, 0.5), widths=(32, 64, 128))
lidar_model = dict(type="BEVDetector", modality="lidar", class_names=class_names, grid=grid, pillar=pillar,
                   backbone=backbone, head=head)
camera_model = dict(type="BEVDetector", modality="camera", class_names=class_names, grid=grid, camera=camera,
                    backbone=backbone, head=head)
fusion_model = dict(type="BEVDetector", modality="fusion", class_names=class_names, grid=grid, pillar=pillar,
                    camera=camera, fusion=dict(out_channels=64), backbone=backbone, head=head)
