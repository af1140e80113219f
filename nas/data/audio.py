"""The audio front end shared by the spoken-digit and folder datasets, numpy/scipy only.

wav file -> mono float32 in [-1, 1] -> resampled to `sample_rate` -> leading/trailing silence
trimmed -> padded or cropped (centred) to exactly `frames` analysis frames -> Hann-windowed power
spectrum -> triangular mel filterbank (HTK mel scale) -> natural log. Output (n_mels, frames) float32.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from math import gcd
from pathlib import Path

import numpy as np

from memory_models.errors import InputError

LOG_FLOOR = 1e-6  # added to the mel energies before the log (silence -> log(1e-6) ~ -13.8)


@dataclass(frozen=True)
class FrontEnd:
    sample_rate: int = 16000
    n_mels: int = 40
    frames: int = 64
    win_ms: float = 25.0
    hop_ms: float = 10.0
    fmin: float = 20.0
    fmax: float | None = None  # default: sample_rate / 2
    trim: bool = True

    @property
    def win(self) -> int:
        return int(round(self.sample_rate * self.win_ms / 1000))

    @property
    def hop(self) -> int:
        return int(round(self.sample_rate * self.hop_ms / 1000))

    @property
    def n_fft(self) -> int:
        return 1 << max(self.win - 1, 1).bit_length()

    @property
    def n_samples(self) -> int:
        """Samples that give exactly `frames` frames."""
        return self.win + (self.frames - 1) * self.hop

    def __call__(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Log-mel features (n_mels, frames) of a mono signal sampled at `sr`."""
        x = resample(np.asarray(x, dtype=np.float32), sr, self.sample_rate)
        if self.trim:
            x = trim_silence(x, self.sample_rate)
        return log_mel(fix_length(x, self.n_samples), self)


def read_wav(path: Path, dataset: str = "") -> tuple[np.ndarray, int]:
    """(mono float32 signal in [-1, 1], sample rate). PCM 8/16/24/32-bit or float, mono or multi-channel
    (channels are averaged). A missing or unreadable file is an InputError naming it."""
    from scipy.io import wavfile

    where = f"dataset '{dataset}': " if dataset else ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", wavfile.WavFileWarning)
            sr, data = wavfile.read(path, mmap=False)
    except FileNotFoundError:
        raise InputError(f"{where}file not found: {path}") from None
    except (ValueError, OSError, EOFError, IndexError) as e:
        raise InputError(f"{where}cannot read wav file {path}: {e}") from None
    if data.dtype == np.uint8:
        x = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype == np.int16:
        x = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:  # 24-bit is returned left-aligned in int32
        x = (data.astype(np.float64) / 2147483648.0).astype(np.float32)
    elif data.dtype.kind == "f":
        x = data.astype(np.float32)
    else:
        raise InputError(f"{where}unsupported wav sample format {data.dtype} in {path}")
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.size == 0:
        raise InputError(f"{where}wav file has no samples: {path}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"{where}wav file has non-finite samples: {path}")
    return x, int(sr)


def write_wav(path: Path, x: np.ndarray, sr: int) -> None:
    """Write a mono (N,) or multi-channel (N, C) float signal in [-1, 1] as 16-bit PCM."""
    from scipy.io import wavfile

    pcm = np.clip(np.round(np.asarray(x, dtype=np.float64) * 32767.0), -32768, 32767).astype(np.int16)
    wavfile.write(path, int(sr), pcm)


@lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
    """The Kaiser-windowed sinc low-pass `scipy.signal.resample_poly` designs, designed once."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    h = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    h.setflags(write=False)
    return h


def resample(x: np.ndarray, sr: int, target: int) -> np.ndarray:
    """Polyphase resampling from `sr` to `target` Hz (the filter is cached per rate pair)."""
    if sr == target:
        return x.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    g = gcd(int(sr), int(target))
    up, down = target // g, sr // g
    return resample_poly(x.astype(np.float64), up, down, window=_resample_filter(up, down)).astype(np.float32)


def trim_silence(x: np.ndarray, sr: int, top_db: float = 40.0, frame_ms: float = 10.0) -> np.ndarray:
    """Drop leading and trailing frames quieter than `top_db` below the loudest frame."""
    n = max(int(sr * frame_ms / 1000), 1)
    m = len(x) // n
    if m < 2:
        return x
    energy = (x[: m * n].reshape(m, n).astype(np.float64) ** 2).mean(axis=1)
    peak = energy.max()
    if peak <= 0:
        return x
    loud = np.flatnonzero(energy >= peak * 10 ** (-top_db / 10))
    return x[loud[0] * n : (loud[-1] + 1) * n]


def fix_length(x: np.ndarray, n: int) -> np.ndarray:
    """Centre-crop or zero-pad (equally both sides) to exactly n samples."""
    if len(x) >= n:
        start = (len(x) - n) // 2
        return x[start : start + n]
    left = (n - len(x)) // 2
    return np.pad(x, (left, n - len(x) - left))


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


@lru_cache(maxsize=16)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, equally spaced on the HTK mel scale, area-normalized."""
    freqs = np.linspace(0.0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs[None, :] - lo) / (mid - lo)
    down = (hi - freqs[None, :]) / (hi - mid)
    fb = np.maximum(0.0, np.minimum(up, down))
    fb *= 2.0 / (hi - lo)  # Slaney-style normalization: equal area per band
    return fb.astype(np.float32)


def log_mel(x: np.ndarray, fe: FrontEnd) -> np.ndarray:
    """Log-mel spectrogram (n_mels, n_frames) of a mono signal already at fe.sample_rate."""
    win, hop, n_fft = fe.win, fe.hop, fe.n_fft
    if len(x) < win:
        x = np.pad(x, (0, win - len(x)))
    n_frames = 1 + (len(x) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(x, win)[::hop][:n_frames]
    window = np.hanning(win + 2)[1:-1].astype(np.float32)  # periodic-ish, no zero end points
    spec = np.abs(np.fft.rfft(frames * window, n=n_fft, axis=1)) ** 2
    fb = mel_filterbank(
        fe.sample_rate, n_fft, fe.n_mels, float(fe.fmin), float(fe.fmax or fe.sample_rate / 2)
    )
    # einsum, not matmul: this product is tiny, and a multi-threaded BLAS waking up its threads for
    # each call made generation several times slower on a 2-core machine
    mel = np.einsum("tf,mf->mt", spec.astype(np.float32), fb)
    return np.log(mel + LOG_FLOOR).astype(np.float32)
