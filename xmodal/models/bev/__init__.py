"""Native PyTorch BEV 3-D detectors (CPU-friendly): PointPillars LiDAR branch, Lift-Splat camera branch,
concat-conv fusion, a SECOND-FPN backbone and a CenterPoint head, assembled by :class:`BEVDetector`."""

from xmodal.models.bev.backbone import SECONDFPNBackbone
from xmodal.models.bev.centerpoint_head import CenterPointHead
from xmodal.models.bev.detector import BEVDetector
from xmodal.models.bev.fusion import ConvBEVFuser
from xmodal.models.bev.lift_splat import LiftSplatCamera
from xmodal.models.bev.mmdet3d_detector import MMDet3DDetector
from xmodal.models.bev.pillars import PillarFeatureNet

__all__ = ["BEVDetector", "CenterPointHead", "ConvBEVFuser", "LiftSplatCamera", "MMDet3DDetector", "PillarFeatureNet",
           "SECONDFPNBackbone"]
