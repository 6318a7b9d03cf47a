from xmodal.data.digits_av import DigitsAVDataset, DigitsAVSpec, build_digits_av
from xmodal.data.errors import DatasetFormatError
from xmodal.data.paired import PairedDataset
from xmodal.data.segmentation import SegmentationDataset
from xmodal.data.transforms import GaussianNoise, LogMelSpectrogram

__all__ = [
    "DatasetFormatError",
    "DigitsAVDataset",
    "DigitsAVSpec",
    "GaussianNoise",
    "LogMelSpectrogram",
    "PairedDataset",
    "SegmentationDataset",
    "build_digits_av",
]
