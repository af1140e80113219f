"""A tiny ctypes wrapper around the eSpeak NG C API shipped in the `espeakng_loader` wheel.

Synthesis is synchronous and retrieval-only (no audio device): a synth callback collects the int16
samples. eSpeak NG keeps global state, so one `Speaker` per process is shared and guarded by a lock.

Reproducibility: eSpeak NG seeds its noise generator from the clock unless `espeak_ng_SetRandSeed` is
called (`say(..., seed=)` does), and its pitch "flutter" runs on a function-static counter that no API
resets, so an utterance also depends on everything synthesized before it in the process. Output is
therefore reproducible only for the same sequence of calls in a fresh process with seeds given; that
is how `avdigits` generates its data (in a child process).
"""

from __future__ import annotations

import ctypes
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from memory_models.errors import InputError

AUDIO_OUTPUT_SYNCHRONOUS = 2
INITIALIZE_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4
EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@lru_cache(maxsize=1)
def available_variants() -> frozenset[str]:
    """Voice variants (`+f2`, `+m3`, `+klatt`, ...) present in the bundled espeak-ng-data."""
    d = data_path() / "voices" / "!v"
    return frozenset(p.name for p in d.iterdir()) if d.is_dir() else frozenset()


@lru_cache(maxsize=1)
def available_languages() -> frozenset[str]:
    """Language voice identifiers (`en`, `en-us`, `en-gb-scotland`, ...), lower case."""
    d = data_path() / "lang"
    return frozenset(p.name.lower() for p in d.rglob("*") if p.is_file())


def check_voice(voice: str) -> None:
    """Raise ValueError unless `voice` is `<language>[+<variant>]` present in the bundled data."""
    lang, _, variant = voice.partition("+")
    if lang.lower() not in available_languages():
        english = sorted(v for v in available_languages() if v.startswith("en"))
        raise ValueError(f"unknown eSpeak voice language '{lang}' (English ones: {', '.join(english)})")
    if variant and variant not in available_variants():
        raise ValueError(f"unknown eSpeak voice variant '+{variant}' (e.g. +f1..+f5, +m1..+m8)")


class Speaker:
    """Synthesizes text to int16 samples at `sample_rate` (22050 Hz for the bundled voices)."""

    _lock = threading.Lock()
    _instance: Speaker | None = None

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.restype = None
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        sr = lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(), INITIALIZE_DONT_EXIT
        )
        if sr <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({sr}) with data at {data_path()}")
        self.sample_rate = int(sr)
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: eSpeak calls it later
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Speaker:
        with cls._lock:
            if cls._instance is None:
                cls._instance = Speaker()
            return cls._instance

    def _collect(self, wav, n, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(
        self,
        text: str,
        voice: str = "en",
        rate: int = 175,
        pitch: int = 50,
        pitch_range: int = 50,
        seed: int | None = None,
    ) -> np.ndarray:
        """int16 samples of `text` spoken by `voice` at `rate` words/min and `pitch` (0-100); `seed`
        seeds eSpeak's noise generator first (see the module docstring on reproducibility)."""
        with self._lock:
            lib = self._lib
            if seed is not None:
                lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
            if lib.espeak_SetVoiceByName(voice.encode()) != EE_OK:
                raise InputError(f"eSpeak NG has no voice '{voice}'")
            for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, pitch_range)):
                if lib.espeak_SetParameter(param, int(value), 0) != EE_OK:
                    raise RuntimeError(f"espeak_SetParameter({param}, {value}) failed")
            self._chunks = []
            buf = text.encode() + b"\0"
            err = lib.espeak_Synth(buf, len(buf), 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            if err != EE_OK:
                raise RuntimeError(f"espeak_Synth failed ({err}) for {text!r} with voice {voice}")
            lib.espeak_Synchronize()
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
