"""Sample transforms: callables on one sample dict, registered so a config can list them."""

from __future__ import annotations

import torch

from xmodal.registry import TRANSFORMS


@TRANSFORMS.register_module()
class LogMelSpectrogram:
    """Waveform (T,) or (1, T) -> log-mel spectrogram (1, n_mels, frames), optionally standardised.

    ``frames`` crops or zero-pads the time axis so every sample has the same shape.
    """

    def __init__(
        self,
        key: str = "audio",
        sample_rate: int = 22050,
        n_fft: int = 512,
        hop_length: int = 280,
        n_mels: int = 64,
        f_max: float | None = 8000.0,
        frames: int | None = 64,
        mean: float = 0.0,
        std: float = 1.0,
    ) -> None:
        import torchaudio

        self.key = key
        self.frames = frames
        self.mean, self.std = float(mean), float(std)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, f_max=f_max
        )

    def spectrogram(self, waveform: torch.Tensor) -> torch.Tensor:
        """Batched: (..., T) -> (..., 1, n_mels, frames)."""
        spec = torch.log(self.mel(waveform.float()) + 1e-6)
        if self.frames is not None:
            t = spec.shape[-1]
            if t >= self.frames:
                spec = spec[..., : self.frames]
            else:
                spec = torch.nn.functional.pad(spec, (0, self.frames - t), value=float(torch.log(torch.tensor(1e-6))))
        spec = (spec - self.mean) / self.std
        return spec.unsqueeze(-3)

    def __call__(self, sample: dict) -> dict:
        wav = torch.as_tensor(sample[self.key])
        if wav.dim() == 2 and wav.shape[0] == 1:
            wav = wav[0]
        sample[self.key] = self.spectrogram(wav)
        return sample


@TRANSFORMS.register_module()
class GaussianNoise:
    """Adds N(0, std²) noise to one modality (training-time augmentation)."""

    stochastic = True  # a sample differs on every read: no teacher caching over it

    def __init__(self, key: str, std: float = 0.1) -> None:
        self.key, self.std = key, float(std)

    def __call__(self, sample: dict) -> dict:
        x = torch.as_tensor(sample[self.key])
        sample[self.key] = x + self.std * torch.randn_like(x)
        return sample
