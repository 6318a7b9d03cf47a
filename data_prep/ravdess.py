"""RAVDESS speech (audio-visual emotion, 8 classes) -> xmodal's on-disk format, as MST-Distill prepares it.

Input: the extracted RAVDESS speech release, ``Video_Speech_Actor_01.zip`` … ``_24.zip`` and
``Audio_Speech_Actors_01-24.zip``, which all unpack into folders ``Actor_01`` … ``Actor_24``::

    <src>/Actor_01/01-01-03-02-01-01-01.mp4     full audio-video clip (modality 01, speech 01)
    <src>/Actor_01/02-01-03-02-01-01-01.mp4     video-only copy (ignored, as in the official code)
    <audio-src>/Actor_01/03-01-03-02-01-01-01.wav  the audio-only recording of the same take

One sample per ``01-01-*.mp4`` (1,440 in the full release), ordered by actor folder then file name
(the order of the official ``preprocess_RAVDESS_2.py``), label = emotion field - 1. Following
``data_preprocess/preprocess_RAVDESS_0..2.py`` and ``utils.get_ravdess``:

* video: frames 3, 10, 17, …, 103 (15 frames spread over the first 3.6 s at an assumed 30 fps), each
  cropped to the face and resized to 224×224, BGR as OpenCV decodes it, stored (15, 3, 224, 224);
  frames past the end of a short clip stay black. Then min-max scaled per colour channel with one
  minimum and maximum over the whole dataset.
* audio: loaded mono at 22,050 Hz, centre-cropped or zero-padded to 3.6 s, stored as 16-bit PCM
  (the official intermediate .wav), then 15 MFCCs (librosa defaults: 2048-point FFT, hop 512, 128
  Slaney mel bands, power in dB with an 80 dB floor, orthonormal DCT-II) -> (15, 156), min-max
  scaled per sample.

Face crops: ``--face-detector mtcnn`` (default) is the official detector, facenet-pytorch's MTCNN
(``pip install --no-deps facenet-pytorch``: its metadata pins an old torch, the detector runs on
current ones); ``haar`` is OpenCV's bundled Haar cascade (opencv-python 4.x; OpenCV 5 no longer
ships it); ``none`` resizes whole frames. The official resampler is librosa's default, soxr "HQ";
it is used when the ``soxr`` package is installed, else SciPy's polyphase filter (``--resampler``).

Alternatively ``--from-npy DIR`` takes the official preprocessed arrays (``video_data.npy`` N×15×3×224×224,
``audio_data.npy`` N×15×156, ``label_data.npy``, as released with MST-Distill) and applies the same
scaling. Either way the output is ``video.npy`` N×15×3×224×224 (float32, 9.0 MB a sample; float16
with ``--dtype float16``), ``audio.npy`` N×15×156 float32, ``labels.npy``, ``splits.json`` (official
MST-Distill split by default), ``meta.json``; it is staged in a temporary directory renamed into
place at the end, so an interrupted run leaves nothing behind. A truncated or unreadable clip (video
or audio) stops the conversion with its path; ``--skip-bad`` leaves it out instead and lists it in
``meta.json`` ``skipped``.

    python data_prep/ravdess.py --src /path/to/RAVDESS --out data/ravdess --workers 8
    python data_prep/ravdess.py --from-npy /path/to/RAVDESS_preprocessed_npy --out data/ravdess
"""

from __future__ import annotations

import argparse
import io
import json
import math
import multiprocessing
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from xmodal.apis.errors import cli_errors  # noqa: E402
from xmodal.data.integrity import truncation  # noqa: E402
from xmodal.data.provenance import provenance  # noqa: E402
from xmodal.data.skipped import SkippedSources, add_skip_bad_argument, drop_from_splits  # noqa: E402
from xmodal.data.writer import (  # noqa: E402
    DatasetExistsError,
    DatasetStream,
    add_common_arguments,
    official_splits,
    read_split_file,
    refuse_existing,
)
from xmodal.errors import DatasetFormatError  # noqa: E402

NAME = "ravdess"
CLASSES = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
FULL_SIZE = 1440  # 24 actors × 60 speech takes

# official preprocess_RAVDESS_1.py: 15 frames spread over 3.6 s at 30 fps, 224×224 face crops
NUM_FRAMES, CLIP_SECONDS, ASSUMED_FPS, FACE_SIZE = 15, 3.6, 30, 224
_WINDOW = int(CLIP_SECONDS * ASSUMED_FPS)  # 108 frames
FRAME_INDICES = tuple(i * _WINDOW // NUM_FRAMES + _WINDOW // (2 * NUM_FRAMES) for i in range(NUM_FRAMES))
# official preprocess_RAVDESS_0.py / _2.py: 22,050 Hz, 3.6 s, librosa.feature.mfcc(n_mfcc=15) defaults
SAMPLE_RATE, N_MFCC, N_FFT, HOP_LENGTH, N_MELS, TOP_DB = 22050, 15, 2048, 512, 128, 80.0
CLIP_SAMPLES = int(SAMPLE_RATE * CLIP_SECONDS)  # 79,380
MFCC_FRAMES = 1 + CLIP_SAMPLES // HOP_LENGTH  # 156 (centred frames)
SHAPES = {"video": (NUM_FRAMES, 3, FACE_SIZE, FACE_SIZE), "audio": (N_MFCC, MFCC_FRAMES)}

DETECTORS = ("haar", "mtcnn", "none")
RESAMPLERS = ("auto", "soxr_hq", "polyphase")
DTYPES = ("float32", "float16")
NPY_FILES = {"video": "video_data.npy", "audio": "audio_data.npy", "labels": "label_data.npy"}
_FIELDS = ("modality", "vocal channel", "emotion", "intensity", "statement", "repetition", "actor")
_RANGES = ((1, 3), (1, 2), (1, 8), (1, 2), (1, 2), (1, 2), (1, 24))
_STEM = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_ACTOR_DIR = re.compile(r"^Actor_(\d\d)$")
_CHUNK = 8  # samples per step when scanning / scaling the video array (about 145 MB in float64)


# -- file names and layout ---------------------------------------------------------------------
@dataclass(frozen=True)
class RavdessName:
    """The seven fields of ``MM-VV-EE-II-SS-RR-AA.ext``."""

    modality: int
    vocal: int
    emotion: int
    intensity: int
    statement: int
    repetition: int
    actor: int


def parse_name(path: str | Path) -> RavdessName:
    """Fields of a RAVDESS file name; a malformed name raises ``DatasetFormatError`` naming the file."""
    path = Path(path)
    match = _STEM.match(path.stem)
    if not match:
        raise DatasetFormatError(path, "file name", f"{path.name!r}; expected MM-VV-EE-II-SS-RR-AA{path.suffix} "
                                 "(seven two-digit fields, e.g. 01-01-03-02-01-01-01.mp4)")
    values = [int(v) for v in match.groups()]
    for field, value, (low, high) in zip(_FIELDS, values, _RANGES):
        if not low <= value <= high:
            raise DatasetFormatError(path, "file name", f"{field} {value:02d} is outside {low:02d}-{high:02d}")
    return RavdessName(*values)


@dataclass(frozen=True)
class Sample:
    name: str  # Actor_XX/<stem of the .mp4>
    video: Path
    audio: Path
    label: int


def _actor_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise DatasetFormatError(root, "src", "directory not found; expected the folder holding Actor_01 … Actor_24")
    dirs = sorted((p for p in root.iterdir() if p.is_dir() and _ACTOR_DIR.match(p.name)), key=lambda p: p.name)
    if not dirs:
        hint = " (it holds the official .npy arrays: pass --from-npy)" if (root / NPY_FILES["video"]).is_file() else ""
        raise DatasetFormatError(root, "Actor_XX", "no Actor_XX folders; expected the extracted "
                                 f"Video_Speech_Actor_XX.zip and Audio_Speech_Actors_01-24.zip{hint}")
    return dirs


def list_samples(src: str | Path, audio_src: str | Path | None = None) -> list[Sample]:
    """The audio-visual speech takes (``01-01-*.mp4``) in the official order, each with its audio file."""
    video_root = Path(src).expanduser()
    audio_root = Path(audio_src).expanduser() if audio_src is not None else video_root
    samples = []
    for actor_dir in _actor_dirs(video_root):
        actor = int(_ACTOR_DIR.match(actor_dir.name).group(1))
        for path in sorted(actor_dir.iterdir(), key=lambda p: p.name):
            if path.name.startswith(".") or path.suffix.lower() not in (".mp4", ".wav"):
                continue
            fields = parse_name(path)
            if fields.actor != actor:
                raise DatasetFormatError(path, "file name", f"actor {fields.actor:02d} but the file is in "
                                         f"{actor_dir.name}; expected the actor of its folder")
            # the official script reads only full audio-video (01) speech (01) clips
            if path.suffix.lower() != ".mp4" or fields.modality != 1 or fields.vocal != 1:
                continue
            audio = audio_root / actor_dir.name / f"03{path.stem[2:]}.wav"
            if not audio.is_file():
                raise DatasetFormatError(audio, "audio", f"file missing; expected the audio-only take of {path.name} "
                                         "(from Audio_Speech_Actors_01-24.zip; --audio-src if it is elsewhere)")
            samples.append(Sample(f"{actor_dir.name}/{path.stem}", path, audio, fields.emotion - 1))
    if not samples:
        raise DatasetFormatError(video_root, "video", "no audio-visual speech clips (01-01-*.mp4) in the Actor_XX "
                                 "folders; expected the extracted Video_Speech_Actor_XX.zip files")
    return samples


# -- audio: 3.6 s at 22,050 Hz, 16-bit round trip, 15 MFCCs -------------------------------------
def available_resampler() -> str:
    try:
        import soxr  # noqa: F401
    except ImportError:
        return "polyphase"
    return "soxr_hq"


def resample(y: np.ndarray, orig_sr: int, target_sr: int, method: str) -> np.ndarray:
    """Like ``librosa.resample(res_type=method)``: the result has ``ceil(len · target / orig)`` samples."""
    if orig_sr == target_sr:
        return y
    if method == "soxr_hq":
        import soxr

        out = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    else:
        from scipy.signal import resample_poly

        g = math.gcd(int(orig_sr), int(target_sr))
        out = resample_poly(y, target_sr // g, orig_sr // g)
    n = int(math.ceil(len(y) * target_sr / orig_sr))
    out = out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))
    return np.ascontiguousarray(out, dtype=np.float32)


def load_clip_audio(path: Path, resampler: str) -> np.ndarray:
    """The official 3.6 s clip: mono, 22,050 Hz, centre-cropped or zero-padded at the end, 16-bit."""
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, ValueError, TypeError) as err:
        raise DatasetFormatError(path, "audio", f"not a readable audio file ({err}); expected a RAVDESS .wav") from None
    cut = truncation(path)  # libsndfile returns what a truncated file still holds, without an error
    if cut:
        raise DatasetFormatError(path, "audio", f"{cut}; extract the file again")
    if data.size == 0:
        raise DatasetFormatError(path, "audio", "no audio samples; expected a non-empty .wav")
    y = resample(data.mean(axis=1, dtype=np.float32), int(rate), SAMPLE_RATE, resampler)
    if len(y) < CLIP_SAMPLES:
        # the official padding goes through a Python list and so reaches soundfile as float64
        y = np.concatenate([y.astype(np.float64), np.zeros(CLIP_SAMPLES - len(y))])
    else:
        start = (len(y) - CLIP_SAMPLES) // 2  # equal parts off both ends (the longer one at the end)
        y = y[start:start + CLIP_SAMPLES]
    # preprocess_RAVDESS_0.py writes the clip as a .wav (16-bit PCM by default) that _2.py reads back
    buffer = io.BytesIO()
    sf.write(buffer, y, SAMPLE_RATE, format="WAV", subtype="PCM_16")
    buffer.seek(0)
    return sf.read(buffer, dtype="float32")[0]


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz / (200.0 / 3)
    log = hz >= 1000.0
    return np.where(log, 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0), mel)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    return np.where(mel >= 15.0, 1000.0 * np.exp(np.log(6.4) / 27.0 * (mel - 15.0)), mel * 200.0 / 3)


@lru_cache(maxsize=4)
def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters, Slaney scale and area normalisation, 0 Hz - sr/2."""
    fft_freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    mel_freqs = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sr / 2.0), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    weights = np.zeros((n_mels, len(fft_freqs)), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0.0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights


def mfcc(y: np.ndarray, sr: int = SAMPLE_RATE, n_mfcc: int = N_MFCC) -> np.ndarray:
    """``librosa.feature.mfcc(y=y, sr=sr, n_mfcc=n_mfcc)`` with librosa 0.10's defaults -> (n_mfcc, frames)."""
    from scipy.fft import dct
    from scipy.signal import get_window

    y = np.pad(np.asarray(y, dtype=np.float32), N_FFT // 2)  # centred frames, zero padding (librosa >= 0.10)
    frames = np.lib.stride_tricks.sliding_window_view(y, N_FFT)[::HOP_LENGTH]
    window = get_window("hann", N_FFT, fftbins=True)
    spectrum = np.fft.rfft(frames * window, axis=1).astype(np.complex64).T  # (bins, frames)
    power = np.abs(spectrum) ** 2
    mel = mel_filterbank(sr, N_FFT, N_MELS) @ power
    db = 10.0 * np.log10(np.maximum(1e-10, mel))
    db = np.maximum(db, db.max() - TOP_DB)
    return dct(db, type=2, axis=0, norm="ortho")[:n_mfcc].astype(np.float32)


# -- video: 15 face crops -------------------------------------------------------------------------
Box = tuple[int, int, int, int]  # x1, y1, x2, y2 in frame pixels


class HaarFaceDetector:
    """OpenCV's bundled frontal-face Haar cascade (opencv-python 4.x); the largest face, found on a
    frame scaled down to ``max_side`` pixels (RAVDESS faces are large; full-size detection is slower)."""

    def __init__(self, max_side: int = 640) -> None:
        import cv2

        self.cv2 = cv2
        self.cascade = cv2.CascadeClassifier(str(self.cascade_path()))
        self.max_side = max_side

    @staticmethod
    def cascade_path() -> Path:
        """The bundled cascade; OpenCV 5 moved the cascade classifier out of the main package."""
        import cv2

        path = Path(getattr(getattr(cv2, "data", None), "haarcascades", "")) / "haarcascade_frontalface_default.xml"
        if not hasattr(cv2, "CascadeClassifier") or not path.is_file():
            raise ImportError(f"--face-detector haar needs an OpenCV build with cv2.CascadeClassifier and its bundled "
                              f"cascades (opencv-python 4.x); this one ({cv2.__version__}) has none: use "
                              "--face-detector mtcnn (the official detector) or none")
        return path

    def __call__(self, frame: np.ndarray) -> Box | None:
        cv2 = self.cv2
        height, width = frame.shape[:2]
        scale = min(1.0, self.max_side / max(height, width))
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        if scale < 1.0:
            gray = cv2.resize(gray, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_AREA)
        side = max(24, int(0.15 * min(gray.shape)))
        faces = self.cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        if len(faces) == 0:
            return None
        x, y, w, h = max(faces, key=lambda f: int(f[2]) * int(f[3]))
        return round(x / scale), round(y / scale), round((x + w) / scale), round((y + h) / scale)


class MTCNNFaceDetector:
    """The official detector: facenet-pytorch's MTCNN, first (largest) box, rounded."""

    def __init__(self) -> None:
        import torch

        MTCNN = self.mtcnn_class()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.mtcnn = MTCNN(image_size=(720, 1280), device=device)

    @staticmethod
    def mtcnn_class() -> type:
        try:
            from facenet_pytorch import MTCNN
        except ImportError as err:
            # its metadata pins an old torch; the detector itself runs on current torch
            raise ImportError("--face-detector mtcnn needs facenet-pytorch: pip install --no-deps facenet-pytorch "
                              "(or use --face-detector haar / none)") from err
        return MTCNN

    def __call__(self, frame: np.ndarray) -> Box | None:
        boxes, _ = self.mtcnn.detect(np.ascontiguousarray(frame[:, :, ::-1]))  # BGR -> RGB
        return None if boxes is None else tuple(round(float(v)) for v in boxes[0])


def make_detector(name: str) -> Callable[[np.ndarray], Box | None] | None:
    if name not in DETECTORS:
        raise ValueError(f"face detector {name!r}; expected one of {DETECTORS}")
    return {"haar": HaarFaceDetector, "mtcnn": MTCNNFaceDetector}.get(name, lambda: None)()


def check_detector(name: str) -> None:
    """Raise ImportError now if the detector cannot run, without loading it (no GPU use here)."""
    if name == "mtcnn":
        MTCNNFaceDetector.mtcnn_class()
    elif name == "haar":
        HaarFaceDetector.cascade_path()


def crop_face(frame: np.ndarray, box: Box | None) -> np.ndarray:
    """``box`` (clipped to the frame) resized to 224×224, or the whole frame without a box."""
    import cv2

    height, width = frame.shape[:2]
    if box is not None:
        x1, y1, x2, y2 = max(0, box[0]), max(0, box[1]), min(width, box[2]), min(height, box[3])
        if x2 > x1 and y2 > y1:
            frame = frame[y1:y2, x1:x2]
    return cv2.resize(frame, (FACE_SIZE, FACE_SIZE))


def read_face_clip(path: Path, detector: Callable[[np.ndarray], Box | None] | None) -> tuple[np.ndarray, bool]:
    """(15, 224, 224, 3) uint8 BGR face crops of the official frames, and whether a face was found.

    The official script counts from the first frame (its centring of a 3.6 s window never applies,
    as its condition is reversed) and leaves frames past the end black. A frame without a detection
    reuses the previous frame's box, as there; leading frames without one use the first box found,
    and a clip without any face is resized whole.
    """
    import cv2

    cut = truncation(path)  # OpenCV may decode a truncated file up to the cut
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise DatasetFormatError(path, "video", "cannot be opened" + (f" ({cut})" if cut else "")
                                 + "; expected an .mp4 video readable by OpenCV")
    if cut:
        capture.release()
        raise DatasetFormatError(path, "video", f"{cut}; extract the file again")
    wanted = {index: k for k, index in enumerate(FRAME_INDICES)}
    frames: dict[int, np.ndarray] = {}
    count = 0
    try:
        while count <= FRAME_INDICES[-1]:
            ok, frame = capture.read()
            if not ok:
                break
            if count in wanted:
                if frame is None or frame.ndim != 3 or frame.shape[2] != 3:
                    raise DatasetFormatError(path, "video", f"frame {count} is not a colour image")
                frames[wanted[count]] = frame
            count += 1
    finally:
        capture.release()
    if count == 0:
        raise DatasetFormatError(path, "video", "no decodable frames; expected an .mp4 video")
    order = sorted(frames)
    boxes = [detector(frames[k]) if detector is not None else None for k in order]
    found = [b for b in boxes if b is not None]
    previous = found[0] if found else None
    clip = np.zeros((NUM_FRAMES, FACE_SIZE, FACE_SIZE, 3), dtype=np.uint8)
    for k, box in zip(order, boxes):
        previous = box if box is not None else previous
        clip[k] = crop_face(frames[k], previous)
    return clip, bool(found) or detector is None


# -- per-sample work (also run in worker processes) ----------------------------------------------
_worker: dict = {}


def _init_worker(detector: str, resampler: str) -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    _worker.update(detector=make_detector(detector), resampler=resampler)


def _process(sample: Sample) -> tuple:
    """(video (15, 3, 224, 224) uint8, MFCC (15, 156), face found) or ("error", path, field, problem):
    exceptions with several constructor arguments do not survive the trip back from a process."""
    try:
        clip, found = read_face_clip(sample.video, _worker["detector"])
        features = mfcc(load_clip_audio(sample.audio, _worker["resampler"]))
    except DatasetFormatError as err:
        return ("error", err.path, err.field, err.problem)
    return clip.transpose(0, 3, 1, 2), features, found  # official video_loader: (T, H, W, C) -> (T, C, H, W)


def _results(samples: Sequence[Sample], detector: str, resampler: str, workers: int) -> Iterator[tuple]:
    if workers <= 1:
        _init_worker(detector, resampler)
        yield from map(_process, samples)
        return
    # spawn: forked children cannot use a CUDA context (MTCNN) or OpenCV's threads safely
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                             initargs=(detector, resampler)) as pool:
        yield from pool.map(_process, samples, chunksize=2)


# -- scaling (utils.get_ravdess: min_max_normalize) ---------------------------------------------
def video_channel_range(video: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel minimum and maximum over all samples, frames and pixels (axes 0, 1, 3, 4)."""
    low = np.full(video.shape[2], np.inf)
    high = np.full(video.shape[2], -np.inf)
    for start in range(0, len(video), _CHUNK):
        chunk = np.asarray(video[start:start + _CHUNK])
        low = np.minimum(low, chunk.min(axis=(0, 1, 3, 4)))
        high = np.maximum(high, chunk.max(axis=(0, 1, 3, 4)))
    return low, high


def _scale_video(source: np.ndarray, target: np.ndarray, low: np.ndarray, high: np.ndarray) -> None:
    shape = (1, 1, -1, 1, 1)
    for start in range(0, len(source), _CHUNK):
        chunk = np.asarray(source[start:start + _CHUNK], dtype=np.float64)
        target[start:start + _CHUNK] = (chunk - low.reshape(shape)) / (high - low).reshape(shape)


def scale_audio(audio: np.ndarray, path: Path | str) -> np.ndarray:
    """Per-sample min-max over the (15, 156) MFCC; a constant sample cannot be scaled."""
    audio = np.asarray(audio)
    audio = audio if np.issubdtype(audio.dtype, np.floating) else audio.astype(np.float32)
    low, high = audio.min(axis=(1, 2), keepdims=True), audio.max(axis=(1, 2), keepdims=True)
    flat = np.flatnonzero(high.ravel() <= low.ravel())
    if flat.size:
        raise DatasetFormatError(path, "audio", f"sample {int(flat[0])} is constant; min-max scaling needs a range")
    return ((audio - low) / (high - low)).astype(np.float32)


# -- writing ---------------------------------------------------------------------------------------
def _commit(stream: DatasetStream, labels: np.ndarray, splits: dict, dtype: np.dtype, low: np.ndarray,
            high: np.ndarray, meta_extra: dict, names: Sequence[str] | None) -> Path:
    meta = {
        "modalities": {
            "video": {"shape": list(SHAPES["video"]), "dtype": dtype.name,
                      "layout": "frames x channels (BGR) x H x W, 224x224 face crops"},
            "audio": {"shape": list(SHAPES["audio"]), "dtype": "float32",
                      "layout": "MFCC coefficients x frames (22,050 Hz, hop 512)"},
        },
        "storage_dtype": {"video": dtype.name, "audio": "float32"},
        "normalization": {
            "video": {"mode": "min-max per colour channel over the whole dataset (MST-Distill utils.get_ravdess)",
                      "channels": "BGR", "min": low.tolist(), "max": high.tolist()},
            "audio": {"mode": "min-max per sample (MST-Distill utils.get_ravdess)"},
        },
        "label_source": "emotion field of the file name minus 1",
        **meta_extra,
    }
    source = meta.pop("source")
    files = {}
    if names is not None:
        meta["sample_names"] = "sample_names.txt"
        files["sample_names.txt"] = "\n".join(names) + "\n"
    return stream.commit(labels, CLASSES, NAME, source, splits, extra_meta=meta, extra_files=files)


def _splits(num: int, split_group: int, split_file: str | Path | None) -> tuple[dict, str]:
    if split_file is not None:
        return read_split_file(split_file, num, split_group), f"given ({Path(split_file).name})"
    return official_splits(num, split_group), f"official MST-Distill 60/20/20, group {split_group}"


def _convert_raw(src: Path, out: Path, audio_src: str | Path | None, face_detector: str, resampler: str,
                 dtype: np.dtype, workers: int, split_group: int, split_file: str | Path | None,
                 verbose: bool, skip_bad: bool = False) -> Path:
    samples = list_samples(src, audio_src)
    n = len(samples)
    splits, protocol = _splits(n, split_group, split_file)  # over all clips, so a skipped one moves no other
    resampler = available_resampler() if resampler == "auto" else resampler
    check_detector(face_detector)  # fail now, not in the first worker
    skipped = SkippedSources(skip_bad, src)
    with DatasetStream(out, force=True) as stream:  # convert() has already refused an existing dataset
        raw_path = stream.tmp / "video_uint8.tmp.npy"
        raw = np.lib.format.open_memmap(raw_path, mode="w+", dtype=np.uint8, shape=(n, *SHAPES["video"]))
        audio = np.empty((n, *SHAPES["audio"]), dtype=np.float32)
        no_face, kept = [], []
        for index, result in enumerate(_results(samples, face_detector, resampler, workers)):
            if isinstance(result[0], str):  # ("error", path, field, problem)
                skipped.handle(DatasetFormatError(*result[1:]), samples[index].name)
                continue
            row = len(kept)  # readable clips fill the first rows
            raw[row], audio[row], found = result
            kept.append(index)
            if not found:
                no_face.append(samples[index].name)
            if verbose and (index + 1) % 50 == 0:
                print(f"[ravdess] {index + 1}/{n} clips", file=sys.stderr, flush=True)
        if not kept:
            raise DatasetFormatError(src, "skipped", f"all {n} clips have unreadable files; nothing to write")
        if skipped:
            splits = drop_from_splits(splits, kept, src)
            protocol += f"; {len(skipped)} unreadable sample(s) skipped, the others renumbered"
            samples = [samples[i] for i in kept]
        raw.flush()
        raw, audio = raw[:len(kept)], audio[:len(kept)]
        low, high = video_channel_range(raw)
        if np.any(high <= low):
            raise DatasetFormatError(src, "video", f"a colour channel is constant over all clips (min {low.tolist()}, "
                                     f"max {high.tolist()}); min-max scaling needs a range")
        _scale_video(raw, stream.array("video", raw.shape, dtype), low, high)
        del raw  # close the map before removing it
        raw_path.unlink()
        stream.array("audio", audio.shape, np.float32)[:] = scale_audio(audio, src)
        labels = np.asarray([s.label for s in samples], dtype=np.int64)
        extra = {
            "source": "RAVDESS speech: Actor_XX/01-01-*.mp4 (video) and 03-01-*.wav (audio)",
            "preprocessing": {
                "frames": list(FRAME_INDICES), "face_size": FACE_SIZE, "face_detector": face_detector,
                "no_face_detected": no_face, "sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS,
                "resampler": resampler, "pcm16_round_trip": True,
                "mfcc": {"n_mfcc": N_MFCC, "n_fft": N_FFT, "hop_length": HOP_LENGTH, "n_mels": N_MELS,
                         "mel_scale": "slaney", "top_db": TOP_DB, "center_pad": "zeros", "dct": "type 2, ortho"},
            },
            "split_protocol": protocol,
            **skipped.meta(),
            # the clips are the data; the file list they define is sample_names.txt
            **provenance([split_file], root=src),
        }
        return _commit(stream, labels, splits, dtype, low, high, extra, [s.name for s in samples])


def _load_npy(root: Path, key: str) -> np.ndarray:
    path = root / NPY_FILES[key]
    if not path.is_file():
        raise DatasetFormatError(path, key, f"file missing; expected the official {', '.join(NPY_FILES.values())}")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise DatasetFormatError(path, key, f"not a readable .npy array ({err})") from None


def _convert_npy(src: Path, out: Path, dtype: np.dtype, split_group: int, split_file: str | Path | None) -> Path:
    root = src / "RAVDESS_preprocessed_npy" if (src / "RAVDESS_preprocessed_npy").is_dir() else src
    if not root.is_dir():
        raise DatasetFormatError(root, "from-npy", "directory not found; expected the folder with "
                                 f"{', '.join(NPY_FILES.values())}")
    video, audio, labels = (_load_npy(root, k) for k in ("video", "audio", "labels"))
    n = len(labels)
    for key, array in (("video", video), ("audio", audio)):
        path = root / NPY_FILES[key]
        if tuple(array.shape[1:]) != SHAPES[key]:
            expected = ", ".join(map(str, SHAPES[key]))
            raise DatasetFormatError(path, key, f"shape {list(array.shape)}; expected [N, {expected}]")
        if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
            raise DatasetFormatError(path, key, f"dtype {array.dtype}; expected numbers")
        if len(array) != n:
            raise DatasetFormatError(path, key, f"{len(array)} samples but {NPY_FILES['labels']} has {n}")
    label_path = root / NPY_FILES["labels"]
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetFormatError(label_path, "labels", f"{labels.dtype} {list(labels.shape)}; expected N integers")
    bad = np.flatnonzero((labels < 0) | (labels >= len(CLASSES)))
    if bad.size:
        raise DatasetFormatError(label_path, "labels", f"label {int(labels[bad[0]])} at row {int(bad[0])} is outside "
                                 f"[0, {len(CLASSES) - 1}]")
    splits, protocol = _splits(n, split_group, split_file)
    low, high = video_channel_range(video)
    video_path = root / NPY_FILES["video"]
    if not np.all(np.isfinite(low) & np.isfinite(high)):
        raise DatasetFormatError(video_path, "video", "non-finite value (NaN/Inf); expected pixel values")
    if np.any(high <= low):
        raise DatasetFormatError(video_path, "video", f"a colour channel is constant (min "
                                 f"{low.tolist()}, max {high.tolist()}); min-max scaling needs a range")
    audio_scaled = scale_audio(audio, root / NPY_FILES["audio"])
    if not np.all(np.isfinite(audio_scaled)):
        raise DatasetFormatError(root / NPY_FILES["audio"], "audio", "non-finite value (NaN/Inf); expected MFCCs")
    with DatasetStream(out, force=True) as stream:  # convert() has already refused an existing dataset
        _scale_video(video, stream.array("video", video.shape, dtype), low, high)
        stream.array("audio", audio_scaled.shape, np.float32)[:] = audio_scaled
        extra = {"source": f"MST-Distill preprocessed arrays ({root.name}/{', '.join(NPY_FILES.values())})",
                 "split_protocol": protocol,
                 **provenance([label_path, split_file], [video_path, root / NPY_FILES["audio"]], root=root)}
        return _commit(stream, np.asarray(labels), splits, dtype, low, high, extra, None)


def convert(src: str | Path, out: str | Path, audio_src: str | Path | None = None, from_npy: bool = False,
            face_detector: str = "mtcnn", resampler: str = "auto", dtype: str = "float32", workers: int = 1,
            split_group: int = 0, split_file: str | Path | None = None, force: bool = False,
            verbose: bool = False, skip_bad: bool = False) -> Path:
    """Convert RAVDESS at ``src`` into ``out``; returns ``out``.

    ``src``: the folder with ``Actor_01`` … ``Actor_24`` (videos, and audio unless ``audio_src``
    is given), or with ``from_npy`` the folder holding the official ``video_data.npy``,
    ``audio_data.npy``, ``label_data.npy``. ``face_detector``: "mtcnn" (official), "haar" or "none".
    ``resampler``: "auto" (soxr if installed), "soxr_hq" or "polyphase". ``dtype``: storage of
    the video array, "float32" or "float16". ``workers``: processes for decoding. ``skip_bad``: leave
    out clips whose video or audio file is unreadable (listed in meta.json ``skipped``) instead of
    stopping; only with the raw release (each official array is one file).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}; expected one of {DTYPES}")
    if face_detector not in DETECTORS:
        raise ValueError(f"face_detector={face_detector!r}; expected one of {DETECTORS}")
    if resampler not in RESAMPLERS:
        raise ValueError(f"resampler={resampler!r}; expected one of {RESAMPLERS}")
    if from_npy and skip_bad:
        raise ValueError("skip_bad (--skip-bad) skips clips of the raw release; with from_npy (--from-npy) each "
                         "modality is one file, which is read whole or not at all")
    out = refuse_existing(out, force)
    src = Path(src).expanduser()
    if from_npy:
        return _convert_npy(src, out, np.dtype(dtype), split_group, split_file)
    return _convert_raw(src, out, audio_src, face_detector, resampler, np.dtype(dtype), workers, split_group,
                        split_file, verbose, skip_bad)


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--src", help="folder with the extracted Actor_01 … Actor_24 folders (.mp4, and .wav)")
    source.add_argument("--from-npy", metavar="DIR", help="folder with the official video_data.npy, "
                        "audio_data.npy, label_data.npy (RAVDESS_preprocessed_npy)")
    parser.add_argument("--audio-src", help="folder with the Actor_XX folders of the .wav files (default --src)")
    parser.add_argument("--face-detector", choices=DETECTORS, default="mtcnn",
                        help="face crop: MTCNN as the official code (default; pip install --no-deps "
                        "facenet-pytorch), OpenCV's Haar cascade (opencv-python 4.x), or none (whole frames)")
    parser.add_argument("--resampler", choices=RESAMPLERS, default="auto",
                        help="48 kHz -> 22,050 Hz: soxr_hq as librosa (needs soxr), polyphase (SciPy); "
                        "auto picks soxr_hq when installed")
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="storage of the video array; float16 halves its ~13 GB")
    parser.add_argument("--workers", type=int, default=1, help="processes decoding videos (default 1)")
    add_skip_bad_argument(parser)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    if args.skip_bad and args.from_npy:
        parser.error("--skip-bad skips clips of the raw release (--src); each --from-npy array is one file")
    try:
        out = convert(args.from_npy or args.src, args.out, audio_src=args.audio_src, from_npy=bool(args.from_npy),
                      face_detector=args.face_detector, resampler=args.resampler, dtype=args.dtype,
                      workers=args.workers, split_group=args.split_group, split_file=args.split_file,
                      force=args.force, verbose=True, skip_bad=args.skip_bad)
    except (DatasetFormatError, DatasetExistsError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    meta = json.loads((out / "meta.json").read_text())
    sizes = {k: len(v) for k, v in json.loads((out / "splits.json").read_text()).items()}
    num = len(np.load(out / "labels.npy", mmap_mode="r"))
    print(f"wrote {out}: {num} samples, video {meta['modalities']['video']['shape']} ({args.dtype}), "
          f"audio {meta['modalities']['audio']['shape']}, {len(meta['classes'])} classes, splits {sizes}")
    if meta.get("skipped"):
        print(f"note: skipped {len(meta['skipped'])} clip(s) with unreadable files (listed in meta.json 'skipped')",
              file=sys.stderr)
    missed = meta.get("preprocessing", {}).get("no_face_detected", [])
    if missed:
        print(f"note: no face found in {len(missed)} clip(s), resized whole (listed in meta.json)", file=sys.stderr)
    if num != FULL_SIZE:
        print(f"note: the full RAVDESS speech set has {FULL_SIZE} clips; this one has {num}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
