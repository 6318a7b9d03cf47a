"""digits-av: the embedded image+audio demo dataset, built on first use with no download.

* image: scikit-learn's bundled ``load_digits`` (1,797 real handwritten 8×8 digits), resized to
  28×28, with pixel noise and a random occluding bar so the image alone is imperfect;
* audio: the digit's English name, **synthesized** by eSpeak NG with a random voice, rate and pitch,
  placed at a random offset, mixed with noise and a quieter distractor word at a random SNR, then
  turned into a standardised 1×64×64 log-mel spectrogram.

Synthesis is not bit-identical between calls, so a build is done once per parameter set and
cached (``$XMODAL_DATA`` or ``~/.cache/xmodal``) with a SHA-256 of each array in ``meta.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from xmodal.data.cache import BuildSpec, cached_build, spec_from_config
from xmodal.data.paired import PairedDataset
from xmodal.data.splits import random_splits
from xmodal.data.writer import sha256_of
from xmodal.registry import DATASETS
from xmodal.version import __version__

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
FORMAT_VERSION = "1"
_ACCENTS = ("en", "en-us", "en-029", "en-gb-x-rp", "en-gb-scotland", "en-us-nyc")
_VARIANTS = ("", "+f1", "+f2", "+f3", "+f4", "+m1", "+m2", "+m3", "+m4", "+m5", "+m6", "+m7", "+klatt", "+croak")


@dataclasses.dataclass(frozen=True)
class DigitsAVSpec(BuildSpec):
    """Everything a build depends on; its hash names the cache directory."""

    format_version: ClassVar[str] = FORMAT_VERSION
    image_size: int = 28
    image_noise_std: float = 0.35
    occlusion_prob: float = 0.5
    audio_seconds: float = 0.8
    snr_db: tuple[float, float] = (15.0, 30.0)
    distractor_db: tuple[float, float] = (-25.0, -15.0)
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)



def _images(raw: np.ndarray, spec: DigitsAVSpec, rng: np.random.Generator) -> np.ndarray:
    x = torch.from_numpy(raw.reshape(-1, 1, 8, 8).astype(np.float32) / 16.0)
    x = torch.nn.functional.interpolate(x, size=(spec.image_size,) * 2, mode="bilinear", align_corners=False)
    images = x.numpy()
    size = spec.image_size
    for img in images:
        if rng.random() < spec.occlusion_prob:  # a bar hides part of the digit
            width = rng.integers(size // 5, size // 3 + 1)
            start = rng.integers(0, size - width + 1)
            if rng.random() < 0.5:
                img[:, start : start + width, :] = 0.0
            else:
                img[:, :, start : start + width] = 0.0
    images += rng.normal(0.0, spec.image_noise_std, images.shape).astype(np.float32)
    return ((images - 0.5) / 0.5).astype(np.float32)


def _voices(synth) -> list[str]:
    voices = [a + v for a in _ACCENTS for v in _VARIANTS]
    return [v for v in voices if synth.has_voice(v)]


def _place(wave: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(length, dtype=np.float32)
    wave = wave[:length]
    start = int(rng.integers(0, length - len(wave) + 1))
    out[start : start + len(wave)] = wave
    return out


def _power(x: np.ndarray) -> float:
    return float(np.mean(x**2)) + 1e-12


def _waveforms(labels: np.ndarray, spec: DigitsAVSpec, rng: np.random.Generator) -> tuple[np.ndarray, int, list]:
    from xmodal.data.speech import EspeakSynthesizer

    synth = EspeakSynthesizer()
    voices = _voices(synth)
    length = int(spec.audio_seconds * synth.sample_rate)
    waves = np.zeros((len(labels), length), dtype=np.float32)
    recipe = []

    def speak(word: str) -> tuple[np.ndarray, dict]:
        params = {
            "voice": voices[int(rng.integers(len(voices)))],
            "rate": int(rng.integers(120, 221)),
            "pitch": int(rng.integers(20, 81)),
        }
        return synth.synthesize(word, **params).astype(np.float32) / 32768.0, params

    for i, label in enumerate(labels):
        speech, params = speak(DIGIT_NAMES[label])
        signal = _place(speech, length, rng)
        other = int((label + rng.integers(1, 10)) % 10)
        distractor = _place(speak(DIGIT_NAMES[other])[0], length, rng)
        distractor_db = rng.uniform(*spec.distractor_db)
        distractor *= np.sqrt(_power(signal) / _power(distractor) * 10 ** (distractor_db / 10))
        snr_db = rng.uniform(*spec.snr_db)
        noise = rng.normal(0.0, 1.0, length).astype(np.float32)
        noise *= np.sqrt(_power(signal) / _power(noise) / 10 ** (snr_db / 10))
        waves[i] = signal + distractor + noise
        recipe.append({**params, "snr_db": round(float(snr_db), 2), "distractor": DIGIT_NAMES[other]})
    return waves, synth.sample_rate, recipe


def _write(out: Path, spec: DigitsAVSpec) -> None:
    from sklearn.datasets import load_digits

    from xmodal.data.transforms import LogMelSpectrogram

    rng = np.random.default_rng(spec.seed)
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    splits = random_splits(len(labels), spec.split_fractions, rng)
    images = _images(digits.data, spec, rng)
    waves, sample_rate, recipe = _waveforms(labels, spec, rng)

    to_mel = LogMelSpectrogram(sample_rate=sample_rate)
    mel = to_mel.spectrogram(torch.from_numpy(waves)).numpy()
    train_mel = mel[splits["train"]]
    mean, std = float(train_mel.mean()), float(train_mel.std())  # statistics of the train split only
    audio = ((mel - mean) / std).astype(np.float32)

    np.save(out / "image.npy", images)
    np.save(out / "audio.npy", audio)
    np.save(out / "labels.npy", labels)
    (out / "splits.json").write_text(json.dumps(splits))
    (out / "recipe.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recipe))
    meta = {
        "name": "digits-av",
        "version": FORMAT_VERSION,
        "task": "classification",
        "classes": list(DIGIT_NAMES),
        "modalities": {
            "image": {"shape": list(images.shape[1:]), "dtype": "float32"},
            "audio": {"shape": list(audio.shape[1:]), "dtype": "float32"},
        },
        "source": (
            "images: scikit-learn load_digits (real handwriting, UCI optdigits test set), resized, with noise "
            "and occlusion; audio: SYNTHESIZED speech of the digit name by eSpeak NG (espeakng-loader), with "
            "noise and a distractor word; see recipe.jsonl for each sample's voice, rate, pitch and SNR"
        ),
        "audio_features": {"sample_rate": sample_rate, "log_mel_mean": mean, "log_mel_std": std},
        "build": {**dataclasses.asdict(spec), "xmodal_version": __version__},
        "sha256": {f: sha256_of(out / f) for f in ("image.npy", "audio.npy", "labels.npy", "splits.json")},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1))


def build_digits_av(root: str | Path | None = None, spec: DigitsAVSpec | None = None, force: bool = False) -> Path:
    """Build digits-av (or reuse the cached build) and return its directory.

    The dataset is written to a temporary directory beside the target and renamed into place
    only when complete, so an interrupted build leaves nothing half-written.
    """
    spec = spec or DigitsAVSpec()

    def write(target: Path) -> None:
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            _write(tmp, spec)
            if target.exists():
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    return cached_build("digits_av", spec.key(), write, root, force)


@DATASETS.register_module()
class DigitsAVDataset(PairedDataset):
    """digits-av split, built into the cache on first use; ``data_root`` overrides the cache."""

    def __init__(
        self,
        split: str = "train",
        modalities: list[str] | None = None,
        data_root: str | None = None,
        seed: int = 0,
        pipeline: list = (),
        subset: dict | None = None,
        labelled: dict | None = None,
        **spec_overrides,
    ) -> None:
        if data_root is None:
            spec = spec_from_config(DigitsAVSpec, seed, spec_overrides)
            data_root = build_digits_av(spec=spec)
        super().__init__(data_root, split=split, modalities=modalities, pipeline=pipeline, subset=subset,
                         labelled=labelled)
