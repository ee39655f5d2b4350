"""Tests of the keyword-spotting data module (synthetic espeak-ng set and the
Speech Commands loader)."""

import math
import shutil
import wave

import numpy as np
import pytest

from rnnaccel.host.kws import data as kws


def _require_espeak():
    # Deliberately a failure, not a skip: the synthetic data set is part of
    # the product and the machine must have espeak-ng.
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed: run `make setup` "
                    "(it runs `apt-get install espeak-ng`)", pytrace=False)


N = 48   # 4 blocks of 12 clips


@pytest.fixture(scope="module")
def train_set(tmp_path_factory):
    _require_espeak()
    cache = tmp_path_factory.mktemp("kws_cache")
    return kws.generate("train", N, seed=0, cache_dir=cache, progress=False), cache


@pytest.fixture(scope="module")
def test_set():
    _require_espeak()
    return kws.generate("test", N, seed=0, cache_dir=False, progress=False)


def _rms_db(audio):
    x = audio.astype(np.float64) / 32768.0
    return 20 * np.log10(np.sqrt(np.mean(x ** 2, axis=1)) + 1e-12)


# --------------------------------------------------------------------------
# synthetic data


def test_labels_constant():
    assert kws.LABELS == ("_silence_", "_unknown_", "yes", "no", "up", "down", "left",
                          "right", "on", "off", "stop", "go")
    assert not set(kws.UNKNOWN_WORDS) & set(kws.LABELS)
    assert len(kws.UNKNOWN_WORDS) >= 100


def test_shapes_dtypes_and_balance(train_set):
    (audio, labels, meta), _ = train_set
    assert audio.shape == (N, 16000) and audio.dtype == np.int16
    assert labels.shape == (N,) and labels.dtype == np.int64
    assert len(meta) == N
    assert labels.min() >= 0 and labels.max() < len(kws.LABELS)
    # every block of 12 holds each class once: silence and unknown are each
    # as frequent as one keyword (TF silence/unknown_percentage=10)
    assert np.all(np.bincount(labels, minlength=12) == N // 12)
    for i, (lab, m) in enumerate(zip(labels, meta)):
        assert m["index"] == i and m["label"] == kws.LABELS[lab] and m["split"] == "train"
        if lab >= 2:
            assert m["word"] == kws.LABELS[lab]
        elif lab == 1:
            assert m["word"] in kws.UNKNOWN_WORDS
        else:
            assert m["word"] is None
    assert np.any(audio != 0, axis=1).all()


def test_same_seed_bit_exact(train_set):
    (audio, labels, meta), cache = train_set
    # recomputed in one process (no cache) == computed by 2 workers
    a2, l2, m2 = kws.generate("train", N, seed=0, cache_dir=False, progress=False, workers=1)
    assert np.array_equal(audio, a2) and np.array_equal(labels, l2) and meta == m2
    # the cache gives back the same
    path = kws.cache_path("train", N, 0, cache)
    assert path.is_file()
    a3, l3, m3 = kws.generate("train", N, seed=0, cache_dir=cache, progress=False)
    assert np.array_equal(audio, a3) and np.array_equal(labels, l3) and meta == m3
    # a smaller n is a prefix
    a4, l4, _ = kws.generate("train", 13, seed=0, cache_dir=False, progress=False)
    assert np.array_equal(audio[:13], a4) and np.array_equal(labels[:13], l4)


def test_different_seed_differs(train_set):
    (audio, labels, _), _ = train_set
    a2, l2, _ = kws.generate("train", 12, seed=1, cache_dir=False, progress=False)
    assert not np.array_equal(labels[:12], l2) or not np.array_equal(audio[:12], a2)
    assert not np.array_equal(audio[:12], a2)


def test_voice_split_disjoint(train_set, test_set):
    voices = {s: set(kws.VOICES[s]) for s in kws.SPLITS}
    assert all(voices.values())
    assert not voices["train"] & voices["test"]
    assert not voices["train"] & voices["val"]
    assert not voices["val"] & voices["test"]
    fams = {s: set(kws.SPLIT_FAMILIES[s]) for s in kws.SPLITS}
    assert not fams["train"] & fams["test"] and not fams["train"] & fams["val"]
    # both genders held out
    for s in ("val", "test"):
        assert {kws.VARIANT_FAMILIES[f][0] for f in fams[s]} == {"M", "F"}
    (_, _, meta_tr), _ = train_set
    _, _, meta_te = test_set
    used_tr = {m["voice"] for m in meta_tr if "voice" in m}
    used_te = {m["voice"] for m in meta_te if "voice" in m}
    assert used_tr <= voices["train"] and used_te <= voices["test"]
    assert used_tr and used_te and not used_tr & used_te
    # no variant at all is shared (a test speaker never speaks in training)
    assert not {m["variant"] for m in meta_tr if "variant" in m} & \
        {m["variant"] for m in meta_te if "variant" in m}


def test_silence_has_no_speech_energy(train_set, test_set):
    for audio, labels, _ in (train_set[0], test_set):
        r = _rms_db(audio)
        sil, speech = r[labels == 0], r[labels > 0]
        assert len(sil) and len(speech)
        assert sil.max() < speech.min() - 3.0, (sil.max(), speech.min())
        assert sil.max() < -45.0


def test_espeak_deterministic():
    _require_espeak()
    a = kws.synthesize("left!", "en-gb-scotland+f2", 150, 60)
    b = kws.synthesize("left!", "en-gb-scotland+f2", 150, 60)
    assert a.dtype == np.float64 and len(a) > 1600 and np.array_equal(a, b)


def test_missing_espeak_message(monkeypatch):
    monkeypatch.setattr(kws.shutil, "which", lambda name: None)
    kws.espeak_info.cache_clear()
    try:
        with pytest.raises(RuntimeError) as exc:
            kws.generate("train", 2, cache_dir=False, progress=False)
        msg = str(exc.value)
        assert "espeak-ng not found" in msg and "apt-get install espeak-ng" in msg
        assert "make setup" in msg
        assert "make setup" in kws.install_hint()
    finally:
        kws.espeak_info.cache_clear()


def test_bad_arguments():
    with pytest.raises(ValueError):
        kws.generate("training", 2, cache_dir=False)
    with pytest.raises(ValueError):
        kws.generate("train", -1, cache_dir=False)


# --------------------------------------------------------------------------
# Speech Commands loader on a tiny fake tree

UNKNOWN_DIRS = ("bed", "cat", "dog")
SPEAKERS = ("aa11", "bb22", "cc33", "dd44", "ee55", "ff66")   # ee55 val, ff66 test


def _write_wav(path, samples, rate=16000):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, "<i2").tobytes())


@pytest.fixture
def fake_sc(tmp_path):
    rng = np.random.default_rng(123)
    root = tmp_path / "speech_commands"
    contents = {}
    val, test = [], []
    for word in kws.KEYWORDS + UNKNOWN_DIRS:
        for spk in SPEAKERS:
            rel = f"{word}/{spk}_nohash_0.wav"
            n = int(rng.integers(8000, 16001))   # some clips shorter than 1 s
            x = (rng.standard_normal(n) * 3000).astype(np.int16)
            _write_wav(root / rel, x)
            contents[rel] = x
            if spk == "ee55":
                val.append(rel)
            elif spk == "ff66":
                test.append(rel)
    (root / "validation_list.txt").write_text("\n".join(val) + "\n")
    (root / "testing_list.txt").write_text("\n".join(test) + "\n")
    bg = {}
    for name in ("white_noise.wav", "running_tap.wav"):
        x = (rng.standard_normal(3 * 16000) * 8000).astype(np.int16)
        _write_wav(root / "_background_noise_" / name, x)
        bg[name] = x
    (root / "README.md").write_text("fake\n")
    return root, contents, set(val), set(test), bg


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_speech_commands_split(fake_sc, split):
    root, contents, val, test, bg = fake_sc
    audio, labels, meta = kws.load_speech_commands(root, split, seed=0)
    n_known = 10 * {"train": 4, "val": 1, "test": 1}[split]
    n_extra = math.ceil(n_known * 0.1)
    assert audio.shape == (n_known + 2 * n_extra, 16000) and audio.dtype == np.int16
    assert labels.dtype == np.int64 and len(meta) == len(labels)
    counts = np.bincount(labels, minlength=12)
    assert counts[0] == n_extra and counts[1] == n_extra
    assert np.all(counts[2:] == n_known // 10)
    for a, lab, m in zip(audio, labels, meta):
        assert m["label"] == kws.LABELS[lab] and m["split"] == split
        if lab == 0:
            name = m["path"].split("/")[1]
            src = bg[name][m["offset"]:m["offset"] + 16000].astype(np.float64) * m["volume"]
            assert np.abs(a.astype(np.float64) - src).max() <= 1.0
            continue
        rel = m["path"]
        in_split = "val" if rel in val else "test" if rel in test else "train"
        assert in_split == split
        word = rel.split("/")[0]
        assert (word in UNKNOWN_DIRS) == (lab == 1)
        x = contents[rel]
        assert np.array_equal(a[:len(x)], x) and not a[len(x):].any()   # zero-padded


def test_speech_commands_deterministic_and_shares(fake_sc):
    root = fake_sc[0]
    a1, l1, m1 = kws.load_speech_commands(root, "train", seed=5, silence_pct=20, unknown_pct=25)
    a2, l2, m2 = kws.load_speech_commands(root, "train", seed=5, silence_pct=20, unknown_pct=25)
    assert np.array_equal(a1, a2) and np.array_equal(l1, l2) and m1 == m2
    counts = np.bincount(l1, minlength=12)
    assert counts[0] == 8 and counts[1] == 10 and counts[2:].sum() == 40
    a3, l3, _ = kws.load_speech_commands(root, "train", seed=6, silence_pct=20, unknown_pct=25)
    assert not (np.array_equal(a1, a3) and np.array_equal(l1, l3))
    # unknown_pct larger than what exists: capped at the 12 train unknowns
    _, l4, _ = kws.load_speech_commands(root, "train", seed=0, unknown_pct=100, silence_pct=0)
    assert np.bincount(l4, minlength=12)[1] == 12 and (l4 != 0).all()


def test_speech_commands_without_lists(fake_sc):
    root = fake_sc[0]
    (root / "validation_list.txt").unlink()
    (root / "testing_list.txt").unlink()
    seen = []
    for split in kws.SPLITS:
        _, _, meta = kws.load_speech_commands(root, split, silence_pct=0, unknown_pct=100)
        for m in meta:
            assert kws.which_set(m["path"]) == split
            seen.append(m["path"])
    assert len(seen) == len(set(seen)) == 13 * len(SPEAKERS)
