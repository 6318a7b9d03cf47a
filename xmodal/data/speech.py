"""Speech synthesis with eSpeak NG through the ``espeakng-loader`` wheel (ctypes, no system package).

eSpeak NG (GPL-3.0) is used at run time to *generate* data; none of its code is part of xmodal.
Synthesis is close to but not exactly repeatable between calls, so datasets built with it are
cached once and checksummed (see ``digits_av.py``).
"""

from __future__ import annotations

import ctypes
import threading

import numpy as np

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAM_RATE = 1
_PARAM_PITCH = 3
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakSynthesizer:
    """Turns text into an int16 waveform; one process-wide eSpeak instance behind a lock."""

    _lock = threading.Lock()
    _lib = None
    _sample_rate = 0

    def __init__(self) -> None:
        with self._lock:
            if EspeakSynthesizer._lib is None:
                try:
                    import espeakng_loader
                except ImportError as err:  # pragma: no cover - it is a core dependency
                    raise ImportError(
                        "espeakng-loader is needed to synthesise the digits-av audio: pip install espeakng-loader"
                    ) from err
                lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
                data_path = espeakng_loader.get_data_path().encode()
                rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path, 0)
                if rate <= 0:
                    raise RuntimeError(f"eSpeak NG failed to initialise from {data_path!r} (code {rate})")
                EspeakSynthesizer._lib = lib
                EspeakSynthesizer._sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # kept alive: eSpeak holds only a raw pointer

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def _collect(self, wav, num_samples, _events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def has_voice(self, voice: str) -> bool:
        with self._lock:
            return self._lib.espeak_SetVoiceByName(voice.encode()) == 0

    def synthesize(self, text: str, voice: str = "en", rate: int = 170, pitch: int = 50) -> np.ndarray:
        """Speak ``text``; returns int16 samples at ``self.sample_rate``."""
        lib = self._lib
        with self._lock:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak NG has no voice {voice!r}")
            lib.espeak_SetSynthCallback(self._callback)
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            self._chunks = []
            encoded = text.encode()
            lib.espeak_Synth(encoded, len(encoded) + 1, 0, 0, 0, 0, None, None)
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
