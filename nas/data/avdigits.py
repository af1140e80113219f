"""`avdigits`: audio-visual digits, an image + audio dataset generated locally.

Image: the 8x8 handwritten digits of scikit-learn (`load_digits`, 1797 images), modality `image`
(1, 8, 8) scaled to [0, 1]. Audio: the digit words "zero".."nine" spoken by eSpeak NG (the
`espeakng_loader` wheel, through ctypes) in several English voices (accent + voice variant), at several
speaking rates and pitches, as log-mel spectrograms (modality `audio`, (1, n_mels, frames), standardized
with the train split's mean and std).

Each utterance is paired with `images_per_utterance` random images of the same digit. Voices are
held out whole: `test_voices` voices form the audio test split and `val_voices` the val split (chosen
from the seed), so test speech comes from voices never heard in training; `groups` holds the voice id.
Images are split per class into disjoint train/val/test parts in the same proportions.

The spectrograms depend only on the synthesis options. They are generated in a fresh child Python
process (eSpeak NG's output depends on what the process synthesized before; see espeak.py), with a
fixed per-utterance noise seed, so a rebuild gives identical arrays. They are generated once into the cache directory
(`avdigits-<key>.npz` + a JSON sidecar with the sha256 of the arrays; a file that fails the check is
regenerated). Splits, pairing, standardization and noise are cheap and redone from the seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from ._common import (
    Options,
    cached_build,
    group_count_split,
    progress_bar,
    show_progress,
    stable_hash,
    standardize,
)
from .audio import FrontEnd
from .base import Dataset, Split

NAME = "avdigits"
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GEN_VERSION = 1

DEFAULT_VOICES = (
    "en+m1",
    "en+f3",
    "en-us+m3",
    "en-us+f2",
    "en-us-nyc+m5",
    "en-us-nyc+f1",
    "en-gb-scotland+m2",
    "en-gb-scotland+f4",
    "en-gb-x-rp+m4",
    "en-gb-x-rp+f5",
    "en-029+m6",
    "en-029+f2",
    "en-gb-x-gbclan+m7",
    "en-gb-x-gbclan+f1",
    "en-gb-x-gbcwmd+m8",
    "en-gb-x-gbcwmd+f3",
)


class AVDigitsOptions(Options):
    voices: tuple[str, ...] = Field(
        DEFAULT_VOICES, min_length=3, description="eSpeak voices '<language>[+<variant>]'"
    )
    rates: tuple[int, ...] = Field(
        (130, 160, 190, 220), min_length=1, description="speaking rates, words/min (80-450)"
    )
    pitches: tuple[int, ...] = Field((30, 50, 70), min_length=1, description="base pitches (0-100)")
    test_voices: int = Field(3, ge=1, description="voices held out for the test split")
    val_voices: int = Field(3, ge=1, description="voices held out for the val split")
    n_mels: int = Field(40, ge=8, le=128)
    frames: int = Field(64, ge=8, le=1000, description="spectrogram frames (10 ms hop by default)")
    win_ms: float = Field(25.0, gt=0, le=100)
    hop_ms: float = Field(10.0, gt=0, le=100)
    images_per_utterance: int = Field(1, ge=1, le=20)
    image_noise: float = Field(0.0, ge=0, description="Gaussian noise std relative to the image std")
    audio_noise: float = Field(0.0, ge=0, description="Gaussian noise std relative to the audio std")
    progress: bool | None = Field(
        None, description="progress bar while generating (default: if stderr is a TTY)"
    )

    @field_validator("voices")
    @classmethod
    def _voices(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from .espeak import check_voice

        for voice in v:
            check_voice(voice)
        if len(set(v)) != len(v):
            raise ValueError("voices must be distinct")
        return v

    @field_validator("rates")
    @classmethod
    def _rates(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 80 <= r <= 450 for r in v) or len(set(v)) != len(v):
            raise ValueError("rates must be distinct words/min between 80 and 450")
        return v

    @field_validator("pitches")
    @classmethod
    def _pitches(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 0 <= p <= 100 for p in v) or len(set(v)) != len(v):
            raise ValueError("pitches must be distinct values between 0 and 100")
        return v

    @model_validator(mode="after")
    def _counts(self) -> AVDigitsOptions:
        if self.test_voices + self.val_voices >= len(self.voices):
            raise ValueError(
                f"test_voices ({self.test_voices}) + val_voices ({self.val_voices}) must leave at least one of "
                f"the {len(self.voices)} voices for training"
            )
        return self

    def front_end(self) -> FrontEnd:
        return FrontEnd(
            sample_rate=16000, n_mels=self.n_mels, frames=self.frames, win_ms=self.win_ms, hop_ms=self.hop_ms
        )

    def generation_key(self) -> dict:
        import espeakng_loader

        return {
            "version": GEN_VERSION,
            "espeakng_loader": getattr(espeakng_loader, "__version__", "0.2.4"),
            "voices": list(self.voices),
            "rates": list(self.rates),
            "pitches": list(self.pitches),
            "n_mels": self.n_mels,
            "frames": self.frames,
            "win_ms": self.win_ms,
            "hop_ms": self.hop_ms,
        }


def _synthesize_here(opts: AVDigitsOptions, advance) -> dict[str, np.ndarray]:
    """Every (voice, rate, pitch, word) once, in a fixed order, each with a seed derived from its
    content: log-mel (U, n_mels, frames) and the word / voice / rate / pitch index of each."""
    from .espeak import Speaker

    speaker = Speaker.get()
    fe = opts.front_end()
    combos = [
        (v, r, p)
        for v in range(len(opts.voices))
        for r in range(len(opts.rates))
        for p in range(len(opts.pitches))
    ]
    n = len(combos) * len(WORDS)
    spec = np.empty((n, fe.n_mels, fe.frames), np.float32)
    meta = np.empty((n, 4), np.int64)  # word, voice, rate, pitch
    durations = np.empty(n, np.float32)
    i = 0
    for v, r, p in combos:
        for w, word in enumerate(WORDS):
            voice, rate, pitch = opts.voices[v], opts.rates[r], opts.pitches[p]
            seed = int(stable_hash([voice, rate, pitch, word], 8), 16)
            pcm = speaker.say(word, voice, rate=rate, pitch=pitch, seed=seed)
            x = pcm.astype(np.float32) / 32768.0
            durations[i] = len(x) / speaker.sample_rate
            spec[i] = fe(x, speaker.sample_rate)
            meta[i] = (w, v, r, p)
            i += 1
        advance(len(WORDS))
    return {
        "spec": spec,
        "word": meta[:, 0],
        "voice": meta[:, 1],
        "rate": meta[:, 2],
        "pitch": meta[:, 3],
        "duration_s": durations,
    }


def _child_main() -> None:
    """Entry point of the generation process: options as JSON on stdin, progress counts on stdout."""
    opts = AVDigitsOptions.model_validate_json(sys.stdin.read())

    def advance(k: int) -> None:
        print(k, flush=True)

    arrays = _synthesize_here(opts, advance)
    np.savez(sys.argv[1], **arrays)


def synthesize(opts: AVDigitsOptions) -> dict[str, np.ndarray]:
    """Generate the spectrograms in a fresh Python process (eSpeak NG output depends on the process's
    synthesis history; see nas/data/espeak.py), with a progress bar here."""
    n = len(opts.voices) * len(opts.rates) * len(opts.pitches) * len(WORDS)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [pkg_root, os.environ.get("PYTHONPATH")])),
    }
    code = "from nas.data.avdigits import _child_main; _child_main()"
    with tempfile.TemporaryDirectory(prefix="m2nas-avdigits-") as tmp:
        out, err_path = Path(tmp) / "spec.npz", Path(tmp) / "stderr.txt"
        with (
            open(err_path, "w") as err,
            progress_bar(f"synthesizing {n} spoken digits", n, show_progress(opts.progress)) as advance,
        ):
            proc = subprocess.Popen(
                [sys.executable, "-c", code, str(out)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(opts.model_dump_json())
            proc.stdin.close()
            for line in proc.stdout:
                if line.strip().isdigit():
                    advance(int(line))
            rc = proc.wait()
        if rc != 0 or not out.is_file():
            tail = err_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"avdigits: speech synthesis process failed (exit {rc}): {tail[0]}")
        with np.load(out) as z:
            return {k: z[k] for k in z.files}


def _digit_images() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images.astype(np.float32) / 16.0)[:, None], d.target.astype(np.int64)


def load(opts: AVDigitsOptions, seed: int, cache_dir: Path | None) -> Dataset:
    t0 = time.perf_counter()
    arrays, cache_state = cached_build(cache_dir, NAME, opts.generation_key(), lambda: synthesize(opts))
    build_s = time.perf_counter() - t0
    spec, word, voice = arrays["spec"], arrays["word"].astype(np.int64), arrays["voice"].astype(np.int64)

    rng = np.random.default_rng([seed, 0xA7D])
    idx, voice_ids = group_count_split(
        voice, opts.test_voices, opts.val_voices, int(rng.integers(2**31)), NAME
    )

    # images: per class, disjoint train/val/test parts in the proportion of the voices per split
    images, labels = _digit_images()
    n_v = len(opts.voices)
    frac = np.array([n_v - opts.test_voices - opts.val_voices, opts.val_voices, opts.test_voices]) / n_v
    image_parts: dict[str, dict[int, np.ndarray]] = {"train": {}, "val": {}, "test": {}}
    for c in range(len(WORDS)):
        pool = rng.permutation(np.flatnonzero(labels == c))
        cut = np.round(np.cumsum(frac) * len(pool)).astype(int)
        a = int(np.clip(cut[0], 1, len(pool) - 2))  # every part keeps at least one image
        b = int(np.clip(cut[1], a + 1, len(pool) - 1))
        for name, part in zip(("train", "val", "test"), np.split(pool, [a, b])):
            image_parts[name][c] = part

    splits: dict[str, Split] = {}
    for name in ("train", "val", "test"):
        utt = np.repeat(idx[name], opts.images_per_utterance)
        utt = utt[rng.permutation(len(utt))]
        y = word[utt]
        img_idx = np.empty(len(utt), np.int64)
        for c in range(len(WORDS)):
            where = np.flatnonzero(y == c)
            pool = image_parts[name][c]
            # cycle through a shuffled pool so images are used evenly
            reps = -(-len(where) // len(pool))
            img_idx[where] = np.concatenate([rng.permutation(pool) for _ in range(reps)])[: len(where)]
        splits[name] = Split(
            {"image": images[img_idx].copy(), "audio": spec[utt][:, None].copy()},
            y,
            voice[utt].copy(),
        )
    audio_stats = standardize(splits, "audio", per_channel=False)

    image_std = float(splits["train"].x["image"].std())
    for name, s in splits.items():
        noise_rng = np.random.default_rng([seed, 0xA7D, ("train", "val", "test").index(name)])
        if opts.image_noise > 0:
            noisy = s.x["image"] + noise_rng.normal(0, opts.image_noise * image_std, s.x["image"].shape)
            s.x["image"] = np.clip(noisy, 0.0, 1.0).astype(np.float32)
        if opts.audio_noise > 0:
            s.x["audio"] = (s.x["audio"] + noise_rng.normal(0, opts.audio_noise, s.x["audio"].shape)).astype(
                np.float32
            )

    fe = opts.front_end()
    return Dataset(
        name=NAME,
        modalities={"image": (1, 8, 8), "audio": (1, fe.n_mels, fe.frames)},
        classes=list(WORDS),
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info={
            "description": "8x8 handwritten digits paired with spoken digit words of the same class",
            "source": "images: scikit-learn load_digits (UCI optical digits); speech: synthesized locally "
            "with eSpeak NG (espeakng_loader wheel)",
            "split": f"by voice: {opts.test_voices} voices test, {opts.val_voices} val, the rest train (seeded); "
            "images split per class into disjoint parts; groups = voice index",
            "voices": {k: [opts.voices[i] for i in v] for k, v in voice_ids.items()},
            "utterances": int(len(word)),
            "audio_front_end": f"16 kHz, {fe.win_ms:g} ms Hann window, {fe.hop_ms:g} ms hop, {fe.n_mels} mel bands, "
            f"{fe.frames} frames, log, standardized with train mean/std",
            "audio_standardization": {"mean": audio_stats["mean"][0], "std": audio_stats["std"][0]},
            "cache": cache_state,
            "build_s": round(build_s, 3),
            "options": opts.model_dump(mode="json", exclude={"progress"}),
        },
    )
