"""Datasets: the registry, the built-in data (watch, avdigits), the folder loaders (coswara,
depth_thermal), bring-your-own npz, the avdigits cache, and the errors users see."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from memory_models.errors import InputError
from nas.data import DATASETS, dataset_names, describe, load_dataset
from nas.data.audio import FrontEnd, log_mel, read_wav, write_wav
from nas.data.base import Dataset
from nas.data.png import read_png, resize, write_png
from tests.fixtures.data import write_coswara, write_depth_thermal, write_digits_npz

# a small avdigits: 5 voices (1 test, 1 val, 3 train) x 2 rates x 2 pitches x 10 words = 200 utterances
SMALL_AV = {
    "voices": ["en-us+m3", "en-gb-x-rp+f2", "en-029+m6", "en-gb-scotland+f4", "en+m1"],
    "rates": [150, 200],
    "pitches": [40, 60],
    "test_voices": 1,
    "val_voices": 1,
    "n_mels": 32,
    "frames": 48,
    "progress": False,
}


def check_contract(ds: Dataset) -> None:
    """Shapes, dtypes and label ranges of every split agree with ds.modalities and ds.classes."""
    assert list(ds.train.x) == list(ds.modalities)
    for split in (ds.train, ds.val, ds.test):
        assert len(split) > 0
        assert split.y.dtype == np.int64 and split.y.shape == (len(split),)
        assert split.y.min() >= 0 and split.y.max() < ds.n_classes
        for name, shape in ds.modalities.items():
            a = split.x[name]
            assert a.dtype == np.float32, (name, a.dtype)
            assert a.shape == (len(split), *shape), (name, a.shape, shape)
            assert np.isfinite(a).all()
        if split.groups is not None:
            assert split.groups.shape == (len(split),)
    s = ds.summary()
    json.dumps(s)  # the summary is JSON-able
    assert s["splits"] == {"train": len(ds.train), "val": len(ds.val), "test": len(ds.test)}
    assert s["modalities"] == {k: list(v) for k, v in ds.modalities.items()}
    for key in ("description", "source", "split"):
        assert ds.info[key]


def assert_groups_disjoint(ds: Dataset) -> None:
    g = [set(np.unique(s.groups).tolist()) for s in (ds.train, ds.val, ds.test)]
    assert not (g[0] & g[1]) and not (g[0] & g[2]) and not (g[1] & g[2]), g


def one_line(e: pytest.ExceptionInfo, *fragments: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)
    return msg


# ------------------------------------------------------------------------------------------- registry


def test_registry_lists_every_dataset():
    assert dataset_names() == ["watch", "avdigits", "coswara", "depth_thermal", "npz"]
    assert set(DATASETS) == set(dataset_names())
    for spec in DATASETS.values():
        assert spec.summary


def test_unknown_dataset_and_bad_options_are_one_line_errors():
    with pytest.raises(InputError) as e:
        load_dataset("mnist")
    one_line(e, "unknown dataset 'mnist'", "watch", "avdigits")
    with pytest.raises(InputError) as e:
        load_dataset("watch", {"windw_s": 2})
    one_line(e, "'watch'", "unknown option 'windw_s'", "window_s")
    with pytest.raises(InputError) as e:
        load_dataset("watch", {"window_s": -1})
    one_line(e, "option 'window_s'", "greater than 0")
    with pytest.raises(InputError) as e:
        load_dataset("watch", {"test_subjects": 5, "val_subjects": 5})
    one_line(e, "test_subjects", "val_subjects", "training")
    with pytest.raises(InputError) as e:
        load_dataset("avdigits", {"voices": ["en", "en-us", "xx-nope"]})
    one_line(e, "option 'voices'", "xx-nope")
    with pytest.raises(InputError) as e:
        load_dataset("avdigits", {"voices": ["en", "en-us", "en+nope"]})
    one_line(e, "option 'voices'", "+nope")
    with pytest.raises(InputError) as e:
        load_dataset("avdigits", {"rates": [150, "fast"]})
    one_line(e, "option 'rates[1]'")
    with pytest.raises(InputError) as e:
        load_dataset("watch", ["window_s"])  # type: ignore[arg-type]
    one_line(e, "options must be a mapping")


@pytest.mark.parametrize(
    ("name", "option", "hint"),
    [("coswara", "root", "metadata.csv"), ("depth_thermal", "root", "_depth.png"), ("npz", "path", ".npz")],
)
def test_folder_datasets_say_what_to_supply(tmp_path, name, option, hint):
    with pytest.raises(InputError) as e:
        load_dataset(name)
    one_line(e, f"option '{option}' is required", hint)
    with pytest.raises(InputError) as e:
        load_dataset(name, {option: str(tmp_path / "nowhere")})
    one_line(e, str(tmp_path / "nowhere"), "not found")


# ---------------------------------------------------------------------------------------------- watch


def test_watch_shapes_classes_and_subject_split():
    ds = load_dataset("watch")
    check_contract(ds)
    assert ds.modalities == {"acc": (3, 100), "gyro": (3, 100)}
    assert ds.classes == ["PEN", "ABD", "FEL", "IR", "ER", "TRAP", "ROW"]
    assert_groups_disjoint(ds)
    subjects = [np.unique(s.groups) for s in (ds.train, ds.val, ds.test)]
    assert [len(s) for s in subjects] == [6, 2, 2]
    assert sorted(np.concatenate(subjects).tolist()) == list(range(1, 11))
    assert set(np.unique(ds.train.y)) == set(range(7))
    # standardized per channel with train statistics only
    for m in ("acc", "gyro"):
        tr = ds.train.x[m]
        np.testing.assert_allclose(tr.mean(axis=(0, 2)), 0, atol=1e-4)
        np.testing.assert_allclose(tr.std(axis=(0, 2)), 1, atol=1e-3)
        assert not np.allclose(ds.test.x[m].mean(axis=(0, 2)), 0, atol=1e-3)
    # 2 s windows every 1 s: a recording of T samples gives floor((T - 100) / 50) + 1 windows
    from seglearn.datasets import load_watch

    raw = load_watch()
    expected = sum((len(x) - 100) // 50 + 1 for x in raw["X"])
    assert len(ds.train) + len(ds.val) + len(ds.test) == expected


def test_watch_options_and_determinism():
    a = load_dataset(
        "watch", {"window_s": 1.0, "stride_s": 0.5, "test_subjects": 3, "val_subjects": 1}, seed=7
    )
    check_contract(a)
    assert a.modalities == {"acc": (3, 50), "gyro": (3, 50)}
    assert [len(np.unique(s.groups)) for s in (a.train, a.val, a.test)] == [6, 1, 3]
    assert_groups_disjoint(a)
    b = load_dataset(
        "watch", {"window_s": 1.0, "stride_s": 0.5, "test_subjects": 3, "val_subjects": 1}, seed=7
    )
    assert a.fingerprint() == b.fingerprint()
    c = load_dataset(
        "watch", {"window_s": 1.0, "stride_s": 0.5, "test_subjects": 3, "val_subjects": 1}, seed=8
    )
    assert c.fingerprint() != a.fingerprint()
    assert c.info["subjects"] != a.info["subjects"]


# ------------------------------------------------------------------------------------------- avdigits


@pytest.fixture(scope="module")
def av_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("m2nas-cache")


def test_avdigits_shapes_voices_and_pairing(av_cache):
    ds = load_dataset("avdigits", SMALL_AV, seed=0, cache_dir=av_cache)
    check_contract(ds)
    assert ds.modalities == {"image": (1, 8, 8), "audio": (1, 32, 48)}
    assert ds.classes == ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert [len(ds.train), len(ds.val), len(ds.test)] == [120, 40, 40]
    assert_groups_disjoint(ds)  # groups = voice: test speech comes from a voice never heard in training
    voices = ds.info["voices"]
    assert len(voices["test"]) == 1 and len(voices["val"]) == 1 and len(voices["train"]) == 3
    assert sorted(sum(voices.values(), [])) == sorted(SMALL_AV["voices"])
    for split in (ds.train, ds.val, ds.test):
        assert sorted(np.bincount(split.y).tolist()) == [len(split) // 10] * 10
        img = split.x["image"]
        assert img.min() >= 0 and img.max() <= 1
    # images: the real sklearn digits, of the same class as the spoken word, disjoint between splits
    from sklearn.datasets import load_digits

    d = load_digits()
    lookup = {(row / 16.0).astype(np.float32).tobytes(): t for row, t in zip(d.images, d.target)}
    used = []
    for split in (ds.train, ds.val, ds.test):
        keys = [im[0].tobytes() for im in split.x["image"]]
        assert [lookup[k] for k in keys] == split.y.tolist()
        used.append(set(keys))
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])
    # audio: standardized with train statistics; words differ from each other
    tr = ds.train.x["audio"]
    assert abs(float(tr.mean())) < 1e-4 and abs(float(tr.std()) - 1) < 1e-3
    means = np.stack([tr[ds.train.y == c].mean(0).ravel() for c in range(10)])
    assert np.linalg.matrix_rank(means) == 10


def test_avdigits_audio_is_learnable_on_unseen_voices(av_cache):
    """Real speech: a nearest-class-mean classifier trained on 3 voices recognizes the held-out voice."""
    ds = load_dataset("avdigits", SMALL_AV, seed=0, cache_dir=av_cache)
    tr, te = ds.train.x["audio"].reshape(len(ds.train), -1), ds.test.x["audio"].reshape(len(ds.test), -1)
    means = np.stack([tr[ds.train.y == c].mean(0) for c in range(10)])
    pred = np.argmin(((te[:, None] - means[None]) ** 2).sum(-1), axis=1)
    # chance is 0.1; dataset seeds 0-4 (voices drawn, mixing, split): 0.85 / 0.95 / 0.75 / 0.775 / 0.95
    assert (pred == ds.test.y).mean() > 0.5


def test_avdigits_determinism_seeds_and_noise(av_cache):
    a = load_dataset("avdigits", SMALL_AV, seed=3, cache_dir=av_cache)
    b = load_dataset("avdigits", SMALL_AV, seed=3, cache_dir=av_cache)
    assert a.fingerprint() == b.fingerprint()
    assert np.array_equal(a.test.groups, b.test.groups)
    c = load_dataset("avdigits", SMALL_AV, seed=4, cache_dir=av_cache)
    assert c.fingerprint() != a.fingerprint()
    noisy = load_dataset(
        "avdigits", {**SMALL_AV, "image_noise": 0.5, "audio_noise": 0.5}, seed=3, cache_dir=av_cache
    )
    assert noisy.info["cache"] == "loaded"  # noise does not change what is generated
    assert np.array_equal(noisy.train.y, a.train.y)
    assert not np.array_equal(noisy.train.x["image"], a.train.x["image"])
    assert noisy.train.x["image"].min() >= 0 and noisy.train.x["image"].max() <= 1
    diff = noisy.train.x["audio"] - a.train.x["audio"]
    assert 0.4 < float(diff.std()) < 0.6


def test_avdigits_cache_hit_checksum_and_regeneration(tmp_path):
    cache = tmp_path / "cache"
    t0 = time.perf_counter()
    first = load_dataset("avdigits", SMALL_AV, cache_dir=cache)
    t_first = time.perf_counter() - t0
    assert first.info["cache"] == "generated"
    files = sorted(cache.glob("avdigits-*.npz"))
    assert len(files) == 1
    npz, sidecar = files[0], files[0].with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    assert len(meta["sha256"]) == 64 and meta["key"]["voices"] == SMALL_AV["voices"]

    t0 = time.perf_counter()
    second = load_dataset("avdigits", SMALL_AV, cache_dir=cache)
    t_second = time.perf_counter() - t0
    assert second.info["cache"] == "loaded"
    assert second.fingerprint() == first.fingerprint()
    assert t_second < t_first

    # the split seed and the noise do not change the generation key; the front end does
    load_dataset("avdigits", {**SMALL_AV, "frames": 40}, cache_dir=cache)
    assert len(list(cache.glob("avdigits-*.npz"))) == 2

    # corrupt bytes in the middle of the archive: detected, regenerated, same data
    raw = bytearray(npz.read_bytes())
    mid = len(raw) // 2
    raw[mid : mid + 64] = bytes(255 - b for b in raw[mid : mid + 64])
    npz.write_bytes(bytes(raw))
    third = load_dataset("avdigits", SMALL_AV, cache_dir=cache)
    assert third.info["cache"] == "regenerated"
    assert third.fingerprint() == first.fingerprint()

    # a well-formed archive whose arrays changed: the checksum catches it
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["spec"][0, 0, 0] += 1.0
    np.savez(npz, **arrays)
    fourth = load_dataset("avdigits", SMALL_AV, cache_dir=cache)
    assert fourth.info["cache"] == "regenerated"
    assert fourth.fingerprint() == first.fingerprint()
    assert load_dataset("avdigits", SMALL_AV, cache_dir=cache).info["cache"] == "loaded"

    # a missing sidecar also means rebuild
    sidecar.unlink()
    assert load_dataset("avdigits", SMALL_AV, cache_dir=cache).info["cache"] == "regenerated"


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("M2NAS_CACHE", str(tmp_path / "env-cache"))
    from nas.data import default_cache_dir

    assert default_cache_dir() == tmp_path / "env-cache"
    small = {**SMALL_AV, "voices": SMALL_AV["voices"][:3], "rates": [175], "pitches": [50]}
    ds = load_dataset("avdigits", small)
    assert ds.info["cache"] == "generated"
    assert len(list((tmp_path / "env-cache").glob("avdigits-*.npz"))) == 1


# ----------------------------------------------------------------------------------------- audio, png


def test_log_mel_front_end_on_tones(tmp_path):
    """A 1 kHz tone lights a mid band, a 3 kHz tone a higher one; wav I/O round-trips and resamples."""
    sr = 22050
    t = np.arange(int(0.5 * sr)) / sr
    fe = FrontEnd(n_mels=40, frames=32)
    peaks = []
    for f in (1000.0, 3000.0):
        path = tmp_path / f"tone{int(f)}.wav"
        write_wav(path, np.stack([0.5 * np.sin(2 * np.pi * f * t)] * 2, 1), sr)  # stereo, 16-bit
        x, got_sr = read_wav(path)
        assert got_sr == sr and x.ndim == 1 and abs(np.abs(x).max() - 0.5) < 1e-3
        spec = fe(x, sr)
        assert spec.shape == (40, 32) and spec.dtype == np.float32
        peaks.append(int(spec.mean(axis=1).argmax()))
    assert 10 < peaks[0] < peaks[1] < 40
    silent = log_mel(np.zeros(fe.n_samples, np.float32), fe)
    assert np.allclose(silent, np.log(1e-6), atol=1e-3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_roundtrip_every_filter(tmp_path, dtype, channels):
    from sklearn.datasets import load_digits

    digits = load_digits().images  # a mosaic of real handwritten digits, 24 x 40, one set per channel
    planes = [
        np.block([[digits[c * 15 + 5 * r + k] for k in range(5)] for r in range(3)]) for c in range(channels)
    ]
    mosaic = np.stack(planes, axis=2) / 16.0
    img = (mosaic * (65535 if dtype == np.uint16 else 255)).round().astype(dtype)
    img = img[:, :, 0] if channels == 1 else img
    for f in ("none", "sub", "up", "average", "paeth"):
        write_png(tmp_path / "x.png", img.astype(dtype), f)
        out = read_png(tmp_path / "x.png")
        assert out.dtype == dtype and np.array_equal(out, img), f
    small = resize(img[..., 0] if img.ndim == 3 else img, (8, 10))
    assert small.shape == (8, 10)


# -------------------------------------------------------------------------------------------- coswara


@pytest.fixture(scope="module")
def coswara_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("coswara")
    write_coswara(root, n_per_class=6)
    return root


COSWARA_SMALL = {"n_mels": 24, "frames": 40, "progress": False}


def test_coswara_loads_and_splits_by_participant(coswara_root, tmp_path):
    ds = load_dataset("coswara", {"root": str(coswara_root), **COSWARA_SMALL}, cache_dir=tmp_path)
    check_contract(ds)
    assert ds.modalities == {m: (1, 24, 40) for m in ("cough", "breathing", "speech")}
    assert ds.classes == ["negative", "positive"]
    assert [len(ds.train), len(ds.val), len(ds.test)] == [8, 2, 2]
    assert_groups_disjoint(ds)
    for split in (ds.val, ds.test):
        assert sorted(split.y.tolist()) == [0, 1]
    ids = ds.info["participant_ids"]
    assert sorted(ids) == [f"P{i:03d}" for i in range(12)]
    # the cough of a 'positive' (dark) participant has more low-band energy than a 'negative' one
    x = np.concatenate([ds.train.x["cough"], ds.val.x["cough"], ds.test.x["cough"]])[:, 0]
    y = np.concatenate([ds.train.y, ds.val.y, ds.test.y])
    low_minus_high = x[:, :8].mean(axis=(1, 2)) - x[:, -8:].mean(axis=(1, 2))
    assert low_minus_high[y == 1].min() > low_minus_high[y == 0].max()
    assert ds.info["cache"] == "generated"
    again = load_dataset("coswara", {"root": str(coswara_root), **COSWARA_SMALL}, cache_dir=tmp_path)
    assert again.info["cache"] == "loaded" and again.fingerprint() == ds.fingerprint()
    other = load_dataset("coswara", {"root": str(coswara_root), **COSWARA_SMALL}, seed=1, cache_dir=tmp_path)
    assert other.fingerprint() != ds.fingerprint()


def test_coswara_nested_layout_label_map_and_columns(tmp_path):
    root = tmp_path / "data"
    write_coswara(root, n_per_class=4, nested=True)
    meta = (root / "metadata.csv").read_text().replace("id,label", "participant,covid_status")
    meta = meta.replace("positive", "positive_mild").replace("negative", "healthy")
    (root / "metadata.csv").unlink()
    (root / "combined_data.csv").write_text(meta + "P999,under_validation\n")
    opts = {
        "root": str(root),
        "id_column": "participant",
        "label_column": "covid_status",
        "label_map": {"healthy": "negative", "positive_mild": "positive"},
        "classes": ["negative", "positive"],
        "files": {"cough": ["cough*.wav"], "speech": ["counting-normal.wav", "speech.wav"]},
        **COSWARA_SMALL,
        "cache": False,
    }
    ds = load_dataset("coswara", opts, cache_dir=tmp_path / "cache")
    check_contract(ds)
    assert list(ds.modalities) == ["cough", "speech"]
    assert ds.info["dropped_by_label_map"] == 1 and ds.info["cache"] == "uncached"
    assert len(ds.train) + len(ds.val) + len(ds.test) == 8
    assert not (tmp_path / "cache").exists()


def test_coswara_errors_name_the_file(tmp_path):
    root = tmp_path / "data"
    write_coswara(root, n_per_class=3)
    opts = {"root": str(root), **COSWARA_SMALL, "cache": False}
    (root / "P002" / "breathing.wav").unlink()
    with pytest.raises(InputError) as e:
        load_dataset("coswara", opts)
    one_line(e, "P002", "breathing", str(root / "P002" / "breathing.wav"))
    skipped = load_dataset("coswara", {**opts, "on_missing": "skip"})
    assert skipped.info["skipped_missing"] == 1

    root2 = tmp_path / "data2"
    write_coswara(root2, n_per_class=3)
    (root2 / "P001" / "cough.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    with pytest.raises(InputError) as e:
        load_dataset("coswara", {**opts, "root": str(root2)})
    one_line(e, str(root2 / "P001" / "cough.wav"))

    shutil.rmtree(root2 / "P004")
    (root2 / "P001" / "cough.wav").unlink()
    shutil.copy(root / "P001" / "cough.wav", root2 / "P001" / "cough.wav")
    with pytest.raises(InputError) as e:
        load_dataset("coswara", {**opts, "root": str(root2)})
    one_line(e, "participant 'P004'", "folder not found", str(root2 / "P004"))

    with pytest.raises(InputError) as e:
        load_dataset("coswara", {**opts, "root": str(root2), "label_column": "status"})
    one_line(e, "metadata.csv", "no column 'status'")
    (root2 / "metadata.csv").unlink()
    with pytest.raises(InputError) as e:
        load_dataset("coswara", {**opts, "root": str(root2)})
    one_line(e, "file not found", str(root2 / "metadata.csv"))


# -------------------------------------------------------------------------------------- depth_thermal


def test_depth_thermal_folder_layout_with_subjects(tmp_path):
    root = tmp_path / "dt"
    written = write_depth_thermal(root, layout="folders")
    ds = load_dataset(
        "depth_thermal", {"root": str(root), "size": 16, "progress": False}, cache_dir=tmp_path / "c"
    )
    check_contract(ds)
    assert ds.modalities == {"depth": (1, 16, 16), "thermal": (1, 16, 16)}
    assert ds.classes == ["lying", "standing"]
    assert len(ds.train) + len(ds.val) + len(ds.test) == len(written) == 24
    assert ds.train.groups is not None
    assert_groups_disjoint(ds)  # subject folders are the groups
    assert "by group" in ds.info["split"]
    # the person is nearer than the wall: standardized depth has a clear low tail in every image
    d = ds.train.x["depth"][:, 0]
    assert (d.min(axis=(1, 2)) < d.max(axis=(1, 2)) - 1.0).all()
    # standing people are tall, lying ones wide: compare the near region's extents
    near = d < (d.min(axis=(1, 2), keepdims=True) + d.max(axis=(1, 2), keepdims=True)) / 2
    tall = near.any(axis=2).sum(1) > near.any(axis=1).sum(1)
    assert (tall == (ds.train.y == 1)).mean() > 0.9
    assert ds.info["cache"] == "generated"
    again = load_dataset(
        "depth_thermal", {"root": str(root), "size": 16, "progress": False}, cache_dir=tmp_path / "c"
    )
    assert again.info["cache"] == "loaded" and again.fingerprint() == ds.fingerprint()
    raw = load_dataset(
        "depth_thermal", {"root": str(root), "size": [12, 20], "normalize": "none", "cache": False}
    )
    assert raw.modalities["thermal"] == (1, 12, 20)
    assert 0 <= raw.train.x["thermal"].min() and raw.train.x["thermal"].max() <= 1


def test_depth_thermal_csv_layout_and_stratified_split(tmp_path):
    root = tmp_path / "dt"
    write_depth_thermal(root, layout="csv")
    ds = load_dataset("depth_thermal", {"root": str(root), "cache": False})
    check_contract(ds)
    assert ds.info["layout"] == "csv" and ds.modalities["depth"] == (1, 32, 32)
    assert_groups_disjoint(ds)
    no_groups = load_dataset(
        "depth_thermal", {"root": str(root), "cache": False, "group_column": None}, seed=5
    )
    assert no_groups.train.groups is None and "stratified" in no_groups.info["split"]
    for split in (no_groups.val, no_groups.test):
        assert sorted(set(split.y.tolist())) == [0, 1]
    flat = tmp_path / "flat"
    write_depth_thermal(flat, layout="flat")
    ds_flat = load_dataset("depth_thermal", {"root": str(flat), "cache": False})
    assert ds_flat.train.groups is None and ds_flat.info["layout"] == "folders"


def test_depth_thermal_errors_name_sample_and_file(tmp_path):
    root = tmp_path / "dt"
    write_depth_thermal(root, layout="folders", subjects=2, per_subject=2)
    lonely = root / "lying" / "S1" / "lyi11_thermal.png"
    lonely.unlink()
    with pytest.raises(InputError) as e:
        load_dataset("depth_thermal", {"root": str(root), "cache": False})
    one_line(e, "sample 'lying/S1/lyi11'", "unpaired", str(lonely))

    csv_root = tmp_path / "csv"
    write_depth_thermal(csv_root, layout="csv", subjects=2, per_subject=2)
    missing = csv_root / "img" / "S0_sta01_depth.png"
    missing.unlink()
    with pytest.raises(InputError) as e:
        load_dataset("depth_thermal", {"root": str(csv_root), "cache": False})
    one_line(e, "sample 'img/S0_sta01'", "file not found", str(missing))

    broken_root = tmp_path / "broken"
    write_depth_thermal(broken_root, layout="csv", subjects=2, per_subject=2)
    broken = broken_root / "img" / "S1_lyi10_thermal.png"
    broken.write_bytes(broken.read_bytes()[:60])
    with pytest.raises(InputError) as e:
        load_dataset("depth_thermal", {"root": str(broken_root), "cache": False})
    one_line(e, "depth_thermal", str(broken))
    with pytest.raises(InputError) as e:
        load_dataset("depth_thermal", {"root": str(broken_root), "group_column": "subject"})
    one_line(e, "no column 'subject'")
    with pytest.raises(InputError) as e:
        load_dataset("depth_thermal", {"root": str(broken_root), "sizes": 32})
    one_line(e, "unknown option 'sizes'")


# ------------------------------------------------------------------------------------------------ npz


def test_npz_seeded_split_given_split_and_groups(tmp_path):
    path = tmp_path / "digits.npz"
    arrays = write_digits_npz(path)
    ds = load_dataset("npz", {"path": str(path), "classes": [f"d{i}" for i in range(10)]})
    check_contract(ds)
    assert ds.modalities == {"image": (1, 8, 8), "profile": (2, 8)}
    assert ds.classes[3] == "d3"
    assert len(ds.train) + len(ds.val) + len(ds.test) == len(arrays["y"])
    assert abs(len(ds.test) - 120) <= 10
    assert load_dataset("npz", {"path": str(path)}).fingerprint() == ds.fingerprint()
    assert load_dataset("npz", {"path": str(path)}, seed=1).fingerprint() != ds.fingerprint()
    only = load_dataset("npz", {"path": str(path), "modalities": ["profile"]})
    assert list(only.modalities) == ["profile"]

    grouped = tmp_path / "grouped.npz"
    write_digits_npz(grouped, group=True)
    g = load_dataset("npz", {"path": str(grouped)})
    assert_groups_disjoint(g)
    given = tmp_path / "given.npz"
    write_digits_npz(given, split=True, group=True)
    s = load_dataset("npz", {"path": str(given)})
    assert [len(s.train), len(s.val), len(s.test)] == [240, 240, 120]
    assert s.info["split"].startswith("given")
    assert_groups_disjoint(s)


def test_npz_errors(tmp_path):
    from sklearn.datasets import load_digits

    d = load_digits()
    img = (d.images[:100, None] / 16).astype(np.float32)
    cases = [
        ({"image": img}, "no array 'y'"),
        ({"image": img, "y": d.target[:99]}, "modality 'image' has 100 samples but 'y' has 99"),
        ({"image": img[:, 0, 0], "y": d.target[:100]}, "modality 'image' has shape (100, 8)"),
        ({"image": img, "y": d.target[:100], "split": np.full(100, "training")}, "'split' value 'training'"),
        ({"image": img, "y": d.target[:100], "split": np.zeros(100, int)}, "leaves the val split empty"),
        (
            {"image": img, "y": d.target[:100], "split": np.arange(100) % 3, "group": np.arange(100) // 10},
            "group 0 is in both the train and val splits",
        ),
    ]
    for i, (arrays, fragment) in enumerate(cases):
        path = tmp_path / f"bad{i}.npz"
        np.savez(path, **arrays)
        with pytest.raises(InputError) as e:
            load_dataset("npz", {"path": str(path)})
        one_line(e, str(path) if i < 5 else "npz", fragment)
    path = tmp_path / "ok.npz"
    np.savez(path, image=img, y=d.target[:100])
    with pytest.raises(InputError) as e:
        load_dataset("npz", {"path": str(path), "modalities": ["audio"]})
    one_line(e, "option 'modalities'", "no array 'audio'")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(InputError) as e:
        load_dataset("npz", {"path": str(tmp_path / "junk.npz")})
    one_line(e, str(tmp_path / "junk.npz"))


# ------------------------------------------------------------------------------------------------ cli


def test_describe_and_datasets_command(tmp_path, monkeypatch, capsys):
    s = describe("watch", {"window_s": 1.0})
    assert s["modalities"] == {"acc": [3, 50], "gyro": [3, 50]} and len(s["classes"]) == 7
    monkeypatch.setenv("M2NAS_CACHE", str(tmp_path))
    from nas.cli.datasets import datasets_command

    datasets_command(json_out=True)
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(dataset_names())
    assert rows["watch"]["splits"]["train"] > 0 and rows["watch"]["modalities"]["acc"] == [3, 100]
    assert rows["avdigits"]["modalities"] == {"image": [1, 8, 8], "audio": [1, 40, 64]}
    assert rows["avdigits"]["splits"] == {"train": 1200, "val": 360, "test": 360}
    assert rows["coswara"]["needs"] == "root=/path" and rows["coswara"]["splits"] is None
    monkeypatch.setenv("COLUMNS", "200")
    datasets_command(json_out=False)
    out = capsys.readouterr().out
    assert "avdigits" in out and "needs root=/path" in out and "1200 / 360 / 360" in out
