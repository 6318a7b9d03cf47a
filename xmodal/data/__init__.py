from xmodal.data.detection import DetectionDataset, detection_collate, write_detection_dataset
from xmodal.data.digits_av import DigitsAVDataset, DigitsAVSpec, build_digits_av
from xmodal.data.labelled_sampler import LabelledRatioBatchSampler
from xmodal.data.paired import PairedDataset
from xmodal.data.retrieval import RetrievalDataset, write_retrieval_dataset
from xmodal.data.segmentation import SegmentationDataset
from xmodal.data.shapes_captions import ShapesCaptionsDataset, ShapesCaptionsSpec, build_shapes_captions
from xmodal.data.synthetic_scenes import SyntheticScenesDataset, SyntheticScenesSpec, build_synthetic_scenes
from xmodal.data.transforms import GaussianNoise, LogMelSpectrogram
from xmodal.data.worker_seed import WorkerSeededBatchSampler
from xmodal.errors import DatasetFormatError

__all__ = [
    "DetectionDataset",
    "DatasetFormatError",
    "DigitsAVDataset",
    "DigitsAVSpec",
    "GaussianNoise",
    "LabelledRatioBatchSampler",
    "LogMelSpectrogram",
    "PairedDataset",
    "RetrievalDataset",
    "SegmentationDataset",
    "ShapesCaptionsDataset",
    "ShapesCaptionsSpec",
    "SyntheticScenesDataset",
    "SyntheticScenesSpec",
    "WorkerSeededBatchSampler",
    "build_digits_av",
    "build_shapes_captions",
    "build_synthetic_scenes",
    "detection_collate",
    "write_detection_dataset",
    "write_retrieval_dataset",
]
