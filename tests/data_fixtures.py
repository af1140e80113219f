"""Small real fixtures for the dataset tests: wav files of physical signals and synthesized speech,
PNG depth/thermal pairs of a simple scene, and an .npz built from scikit-learn's digits."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfilt

from nas.data.audio import write_wav
from nas.data.png import write_png

COSWARA_VOICES = ("en-us+m3", "en-gb-x-rp+f2", "en-029+m5", "en-gb-scotland+f4")


def _band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    sos = butter(4, [lo, min(hi, 0.45 * sr)], btype="band", fs=sr, output="sos")
    return sosfilt(sos, rng.normal(size=n))


def cough(rng: np.random.Generator, sr: int, positive: bool) -> np.ndarray:
    """Two or three decaying noise bursts; 'positive' coughs are darker (low band), others brighter."""
    x = np.zeros(int(0.9 * sr))
    lo, hi = (150.0, 900.0) if positive else (1200.0, 3500.0)
    for k in range(int(rng.integers(2, 4))):
        start = int((0.1 + 0.25 * k) * sr)
        n = int(0.15 * sr)
        env = np.exp(-np.arange(n) / (0.03 * sr))
        x[start : start + n] += _band_noise(rng, n, sr, lo, hi) * env
    return 0.5 * x / np.abs(x).max()


def breathing(rng: np.random.Generator, sr: int, positive: bool) -> np.ndarray:
    """Band-limited noise under a slow in/out envelope; 'positive' breathing is faster and wheezier."""
    t = np.arange(int(1.5 * sr)) / sr
    rate = 1.2 if positive else 0.6
    env = np.maximum(np.sin(2 * np.pi * rate * t), 0) ** 2
    x = _band_noise(rng, len(t), sr, 200.0, 2000.0) * env
    if positive:  # a wheeze: a weak tone riding on the breath
        x += 0.3 * env * np.sin(2 * np.pi * 600 * t)
    return 0.4 * x / np.abs(x).max()


def speech(voice: str, rate: int) -> tuple[np.ndarray, int]:
    from nas.data.espeak import Speaker

    sp = Speaker.get()
    pcm = sp.say("one two three", voice, rate=rate)
    return pcm.astype(np.float64) / 32768.0, sp.sample_rate


def write_coswara(root: Path, n_per_class: int = 6, nested: bool = False, seed: int = 0) -> list[str]:
    """<root>/metadata.csv (id,label) + <root>/[<date>/]<id>/{cough,breathing,speech}.wav.

    Sample rates and channel counts vary across participants (8/16/44.1 kHz, mono/stereo)."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids, rows = [], []
    rates = (8000, 16000, 44100)
    for i in range(2 * n_per_class):
        positive = i % 2 == 0
        pid = f"P{i:03d}"
        folder = root / (f"2020-0{1 + i % 3}-01" if nested else "") / pid
        folder.mkdir(parents=True)
        sr = rates[i % len(rates)]
        stereo = i % 4 == 3
        for name, x in (("cough", cough(rng, sr, positive)), ("breathing", breathing(rng, sr, positive))):
            write_wav(folder / f"{name}.wav", np.stack([x, 0.8 * x], 1) if stereo else x, sr)
        s, s_sr = speech(COSWARA_VOICES[i % len(COSWARA_VOICES)], 150 + 10 * (i % 5))
        write_wav(folder / "speech.wav", s, s_sr)
        ids.append(pid)
        rows.append((pid, "positive" if positive else "negative"))
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "label"])
        w.writerows(rows)
    return ids


def scene(rng: np.random.Generator, label: str, h: int = 24, w: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A person as an ellipse in front of a wall: standing (tall) or lying (wide).

    Depth: uint16 millimetres (wall 3000 mm, person ~1500 mm). Thermal: uint8 RGB, hot person
    (red-yellow) on a cool blue background."""
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = rng.uniform(0.35, 0.65) * h, rng.uniform(0.3, 0.7) * w
    ry, rx = (0.38 * h, 0.12 * w) if label == "standing" else (0.12 * h, 0.35 * w)
    person = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
    depth = np.full((h, w), 3000.0) + rng.normal(0, 15, (h, w))
    depth[person] = rng.uniform(1300, 1700) + rng.normal(0, 10, person.sum())
    heat = np.where(person, rng.uniform(0.75, 0.95), 0.15) + rng.normal(0, 0.02, (h, w))
    heat = np.clip(heat, 0, 1)
    thermal = np.stack([heat, heat**2, 1 - heat], axis=2)  # a simple "hot" colour map
    return depth.astype(np.uint16), (thermal * 255).round().astype(np.uint8)


def write_depth_thermal(
    root: Path, layout: str = "folders", subjects: int = 4, per_subject: int = 3, seed: int = 0
) -> list[tuple[str, str, str]]:
    """Write paired PNGs. layout "folders": <root>/<label>/<subject>/<sample>_{depth,thermal}.png;
    "flat": <root>/<label>/<sample>_*.png; "csv": <root>/img/<sample>_*.png + labels.csv
    (sample,label,group). Returns (sample key, label, subject)."""
    rng = np.random.default_rng(seed)
    filters = ("none", "sub", "up", "average", "paeth")
    out, k = [], 0
    for label in ("lying", "standing"):
        for s in range(subjects):
            for j in range(per_subject):
                subject = f"S{s}"
                name = f"{label[:3]}{s}{j}"
                if layout == "folders":
                    key = f"{label}/{subject}/{name}"
                elif layout == "flat":
                    key = f"{label}/{subject}{name}"
                else:
                    key = f"img/{subject}_{name}"
                depth, thermal = scene(rng, label)
                (root / key).parent.mkdir(parents=True, exist_ok=True)
                write_png(root / f"{key}_depth.png", depth, filters[k % 5])
                write_png(root / f"{key}_thermal.png", thermal, filters[(k + 2) % 5])
                out.append((key, label, subject))
                k += 1
    if layout == "csv":
        with open(root / "labels.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["sample", "label", "group"])
            w.writerows(out)
    return out


def write_digits_npz(
    path: Path, split: bool = False, group: bool = False, n: int = 600
) -> dict[str, np.ndarray]:
    """scikit-learn digits as two modalities: `image` (N, 1, 8, 8) and `profile` (N, 2, 8), the row and
    column ink profiles. Optional `split` (strings) and `group` (blocks of 20 consecutive samples,
    the order the digits were collected in)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    img = (d.images[:n] / 16.0).astype(np.float32)
    arrays = {
        "image": img[:, None],
        "profile": np.stack([img.sum(2), img.sum(1)], 1),
        "y": d.target[:n].astype(np.int64),
    }
    if group:
        arrays["group"] = np.arange(n) // 20
    if split:
        arrays["split"] = np.array(["train", "val", "test"])[(np.arange(n) // 20) % 5 % 3]
    np.savez(path, **arrays)
    return arrays
