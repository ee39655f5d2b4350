"""Keyword-spotting data: a synthetic espeak-ng data set and a Speech Commands loader.

Both return the same triple ``(audio, labels, meta)``:

* ``audio``  -- ``int16`` array ``[n, 16000]``: 1 s clips, 16 kHz, mono;
* ``labels`` -- ``int64`` array ``[n]`` indexing :data:`LABELS`;
* ``meta``   -- list of ``n`` dicts describing each clip (JSON-serialisable).

The label set and class balance follow Hello Edge / TensorFlow's
``speech_commands`` example: ``_silence_``, ``_unknown_`` and ten keywords,
with silence and unknown each about as frequent as a single keyword.

Synthetic data (:func:`generate`)
---------------------------------
Words are spoken by ``espeak-ng`` (a subprocess per clip, ~12 ms each) in one
of :data:`ESPEAK_LANGUAGES` (English accents) combined with one of the voice
variants in :data:`VARIANT_FAMILIES`, at a random speed, pitch and intonation
(final punctuation), then resampled 22050 -> 16000 Hz, trimmed, scaled to a
random level, placed at a random offset in the 1 s window and mixed with
generated white/pink/brown noise and, when the Debian package
``pocketsphinx-testdata`` is installed, low-level real recorded speech, at a
random SNR.  ``_silence_`` clips hold noise only, at a level well below speech.

Every clip is computed from a numpy Generator seeded by
``(GENERATOR_VERSION, seed, split, index)`` so results are bit-exact for a
seed whatever the number of worker processes.  Variant *families* (variants
sharing a vocal tract, i.e. the same formant table, or the same name stem) are
assigned to train/val/test deterministically, stratified by gender, so the
voices of one split never appear in another (:data:`VOICES`).

Speech Commands (:func:`load_speech_commands`)
----------------------------------------------
Reads the v0.01/v0.02 folder layout with ``validation_list.txt``,
``testing_list.txt`` and ``_background_noise_/`` the way TensorFlow's
``input_data.py`` does (see that function's docstring).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import warnings
import wave
from functools import lru_cache
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------
# Labels and constants
# --------------------------------------------------------------------------

#: Class names, in label-index order (TF speech_commands / Hello Edge order).
LABELS = ("_silence_", "_unknown_",
          "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
SILENCE_LABEL = LABELS[0]
UNKNOWN_LABEL = LABELS[1]
KEYWORDS = LABELS[2:]

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000
SPLITS = ("train", "val", "test")
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

#: Bump when anything changes the generated audio; part of the cache key.
GENERATOR_VERSION = 1

#: Words used for the ``_unknown_`` class: the other Speech Commands words
#: (v0.01 and v0.02) plus common English words.  None of them is a keyword or
#: a homophone of one ("know", "write", ...).
UNKNOWN_WORDS = (
    # Speech Commands non-keywords
    "backward", "bed", "bird", "cat", "dog", "eight", "five", "follow",
    "forward", "four", "happy", "house", "learn", "marvin", "nine", "one",
    "seven", "sheila", "six", "three", "tree", "two", "visual", "wow", "zero",
    # more common words
    "apple", "baby", "ball", "banana", "basket", "beach", "bell", "black",
    "blue", "book", "bottle", "box", "boy", "bread", "brother", "butter",
    "camera", "candle", "car", "chair", "cheese", "chicken", "city", "clock",
    "cloud", "coffee", "computer", "cookie", "corner", "cotton", "country",
    "cup", "dance", "doctor", "dollar", "dream", "drink", "eagle", "earth",
    "egg", "eleven", "engine", "evening", "family", "farmer", "father",
    "feather", "field", "finger", "fire", "fish", "flower", "forest",
    "friend", "garden", "girl", "glass", "gold", "grass", "green", "guitar",
    "hammer", "hand", "hat", "heart", "hello", "helmet", "hill", "honey",
    "horse", "hundred", "island", "jacket", "jelly", "kitten", "kitchen",
    "ladder", "lemon", "letter", "lion", "machine", "magic", "market",
    "matter", "metal", "milk", "minute", "money", "monkey", "morning",
    "mother", "mountain", "music", "number", "ocean", "orange", "paper",
    "party", "pencil", "people", "piano", "picture", "pillow", "planet",
    "purple", "rabbit", "radio", "river", "robot", "salad", "sandwich",
    "school", "silver", "sister", "sugar", "summer", "table", "teacher",
    "ten", "thank", "thirty", "tiger", "tomato", "twelve", "uncle",
    "village", "water", "weather", "window", "winter", "yellow", "zebra",
)
assert not set(UNKNOWN_WORDS) & set(KEYWORDS)
assert len(set(UNKNOWN_WORDS)) == len(UNKNOWN_WORDS)

# --------------------------------------------------------------------------
# Voices
# --------------------------------------------------------------------------

#: English accents of espeak-ng 1.51 (``espeak-ng --voices=en``, the mbrola
#: voices excluded: they need the separate mbrola program and data).
ESPEAK_LANGUAGES = ("en-gb", "en-us", "en-us-nyc", "en-gb-scotland",
                    "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029")

#: Voice variants of espeak-ng 1.51 (``espeak-ng --voices=variant``: files in
#: ``espeak-ng-data/voices/!v``), grouped into families of variants that share
#: a vocal tract (identical formant tables) or a name stem; ``""`` is the
#: language's own default voice.  Left out: ``fast`` and ``Mr serious`` (they
#: synthesise exactly like the default), ``caleb`` and ``klatt6`` (identical
#: to ``klatt``).  family -> (gender, variants)
VARIANT_FAMILIES = {
    "default": ("M", ("", "klatt", "klatt2", "klatt3", "klatt4", "klatt5")),
    "adam": ("M", ("adam",)),
    "alex": ("M", ("Alex",)),
    "andy": ("M", ("Andy", "AnxiousAndy")),
    "announcer": ("M", ("announcer",)),
    "antonio": ("M", ("antonio",)),
    "benjamin": ("M", ("benjamin",)),
    "boris": ("M", ("boris",)),
    "croak": ("M", ("croak",)),
    "david": ("M", ("david",)),
    "demonic": ("M", ("Demonic",)),
    "denis": ("M", ("Denis",)),
    "diogo": ("M", ("Diogo", "Henrique", "Hugo", "michel", "miguel")),
    "ed": ("M", ("ed",)),
    "edward": ("M", ("edward", "edward2")),
    "gene": ("M", ("Gene", "Gene2")),
    "grandpa": ("M", ("grandpa",)),
    "gustave": ("M", ("gustave",)),
    "iven": ("M", ("iven", "iven2", "iven3", "iven4")),
    "jacky": ("M", ("Jacky",)),
    "john": ("M", ("john",)),
    "kaukovalta": ("M", ("kaukovalta",)),
    "lee": ("M", ("Lee",)),
    "m1": ("M", ("m1",)),
    "m2": ("M", ("m2",)),
    "m3": ("M", ("m3",)),
    "m4": ("M", ("m4",)),
    "m5": ("M", ("m5",)),
    "m6": ("M", ("m6",)),
    "m7": ("M", ("m7",)),
    "marcelo": ("M", ("marcelo",)),
    "marco": ("M", ("Marco",)),
    "mario": ("M", ("Mario",)),
    "michael": ("M", ("Michael",)),
    "mike": ("M", ("Mike",)),
    "nguyen": ("M", ("Nguyen",)),
    "norbert": ("M", ("norbert",)),
    "pablo": ("M", ("pablo",)),
    "paul": ("M", ("paul",)),
    "pedro": ("M", ("pedro",)),
    "quincy": ("M", ("quincy",)),
    "rob": ("M", ("rob",)),
    "robert": ("M", ("robert",)),
    "robosoft": ("M", ("robosoft", "robosoft2", "robosoft3", "robosoft4",
                       "robosoft5", "robosoft6", "robosoft7", "robosoft8",
                       "m8", "max", "RicishayMax", "RicishayMax2",
                       "RicishayMax3")),
    "sandro": ("M", ("sandro",)),
    "shelby": ("M", ("shelby",)),
    "storm": ("M", ("Storm",)),
    "travis": ("M", ("travis",)),
    "tweaky": ("M", ("Tweaky",)),
    "unirobot": ("M", ("UniRobot",)),
    "victor": ("M", ("victor",)),
    "whisper": ("M", ("whisper",)),
    "zac": ("M", ("zac",)),
    "alicia": ("F", ("Alicia",)),
    "andrea": ("F", ("Andrea",)),
    "anika": ("F", ("anika", "anikaRobot")),
    "annie": ("F", ("Annie",)),
    "aunty": ("F", ("aunty",)),
    "belinda": ("F", ("belinda",)),
    "f1": ("F", ("f1",)),
    "f2": ("F", ("f2",)),
    "f3": ("F", ("f3",)),
    "f4": ("F", ("f4",)),
    "f5": ("F", ("f5",)),
    "grandma": ("F", ("grandma",)),
    "linda": ("F", ("linda",)),
    "steph": ("F", ("steph", "steph2", "steph3")),
    "whisperf": ("F", ("whisperf",)),
}

#: Share of variant families (per gender) held out for validation and test.
HOLDOUT_FRACTION = 0.1


def _split_families() -> dict[str, str]:
    """family -> split: per gender, families ordered by a fixed hash; the
    first 10% go to test, the next 10% to val, the rest to train."""
    out = {}
    for gender in ("M", "F"):
        fams = sorted((f for f, (g, _) in VARIANT_FAMILIES.items() if g == gender),
                      key=lambda f: hashlib.sha256(f"rnnaccel-kws-voice:{f}".encode()).hexdigest())
        hold = max(1, round(HOLDOUT_FRACTION * len(fams)))
        for i, fam in enumerate(fams):
            out[fam] = "test" if i < hold else "val" if i < 2 * hold else "train"
    return out


#: family -> split
FAMILY_SPLIT = _split_families()
#: split -> sorted tuple of families
SPLIT_FAMILIES = {s: tuple(sorted(f for f, sp in FAMILY_SPLIT.items() if sp == s)) for s in SPLITS}


def voice_name(lang: str, variant: str) -> str:
    """The ``-v`` argument of espeak-ng for a voice identity."""
    return f"{lang}+{variant}" if variant else lang


#: split -> tuple of voice identities ``lang+variant`` (disjoint across splits).
VOICES = {s: tuple(voice_name(lang, v) for fam in SPLIT_FAMILIES[s]
                   for v in VARIANT_FAMILIES[fam][1] for lang in ESPEAK_LANGUAGES)
          for s in SPLITS}

# --------------------------------------------------------------------------
# espeak-ng
# --------------------------------------------------------------------------

ESPEAK_HINT = ("espeak-ng not found: install it with `apt-get install espeak-ng` "
               "(make setup does this)")


def install_hint() -> str:
    """How to install what the synthetic data set needs."""
    return ESPEAK_HINT


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise RuntimeError(ESPEAK_HINT)
    return path


@lru_cache(maxsize=None)
def espeak_info() -> dict:
    """Version and data folder of the installed espeak-ng; raises
    RuntimeError with :data:`ESPEAK_HINT` if it is not installed, and if any
    voice this module uses is missing (espeak-ng would silently fall back to
    its default voice)."""
    exe = espeak_binary()
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"text-to-speech:\s*(\S+)\s+.*?Data at:\s*(.+)$", out.strip(), re.S)
    if not m:
        raise RuntimeError(f"cannot parse `espeak-ng --version`: {out!r}")
    version, data_dir = m.group(1), Path(m.group(2).strip())
    have_langs = set()
    listing = subprocess.run([exe, "--voices=en"], capture_output=True, text=True, check=True).stdout
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5 and not cols[4].startswith("mb/"):
            have_langs.add(cols[1])
    missing = [lang for lang in ESPEAK_LANGUAGES if lang not in have_langs]
    vdir = data_dir / "voices" / "!v"
    missing += [f"+{v}" for _, vs in VARIANT_FAMILIES.values() for v in vs
                if v and not (vdir / v).is_file()]
    if missing:
        raise RuntimeError(f"espeak-ng {version} at {exe} lacks voices {missing}; "
                           "install the Debian espeak-ng (1.51) package (make setup does this)")
    return {"version": version, "data_dir": str(data_dir), "exe": exe}


def synthesize(text: str, voice: str = "en-us", speed: int = 175, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` with espeak-ng; return float64 samples in [-1, 1] at 16 kHz."""
    exe = espeak_info()["exe"]
    res = subprocess.run([exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)),
                          "--stdout", text], capture_output=True, check=False)
    if res.returncode != 0 or len(res.stdout) < 44:
        raise RuntimeError(f"espeak-ng failed for voice {voice!r} text {text!r}: "
                           f"{res.stderr.decode(errors='replace').strip()}")
    x, rate = _decode_wav_bytes(res.stdout)
    return _resample(x, rate, SAMPLE_RATE)


def _decode_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    # espeak-ng --stdout writes a streaming header (bogus frame count): read
    # all the frames present.
    with wave.open(io.BytesIO(data)) as w:
        ch, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
        frames = w.readframes(len(data))
    return _pcm_to_float(frames, ch, width), rate


def _pcm_to_float(frames: bytes, channels: int, width: int) -> np.ndarray:
    if width == 1:
        x = (np.frombuffer(frames, np.uint8).astype(np.float64) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(frames, "<i2").astype(np.float64) / 32768.0
    elif width == 3:
        b = np.frombuffer(frames, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = np.where(v >= 1 << 23, v - (1 << 24), v).astype(np.float64) / float(1 << 23)
    elif width == 4:
        x = np.frombuffer(frames, "<i4").astype(np.float64) / float(1 << 31)
    else:
        raise ValueError(f"unsupported WAV sample width {width}")
    n = len(x) // channels
    x = x[:n * channels]
    return x.reshape(n, channels).mean(axis=1) if channels > 1 else x


def _resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    if rate == target:
        return x
    from scipy.signal import resample_poly  # 22050 -> 16000 is up 320, down 441
    g = math.gcd(rate, target)
    return resample_poly(x, target // g, rate // g)


def _read_wav(path, dtype_int16: bool = False):
    """Read a WAV file as mono at 16 kHz: float64 in [-1, 1] or, when
    ``dtype_int16`` and the file already is 16-bit/16 kHz/mono, raw int16."""
    with wave.open(str(path), "rb") as w:
        ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
        frames = w.readframes(n)
    if dtype_int16 and ch == 1 and width == 2 and rate == SAMPLE_RATE:
        return np.frombuffer(frames, "<i2").copy()
    x = _resample(_pcm_to_float(frames, ch, width), rate, SAMPLE_RATE)
    return _to_int16(x) if dtype_int16 else x


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _trim(x: np.ndarray, frame: int = 80, rel_db: float = -45.0, pad: int = 80) -> np.ndarray:
    """Cut leading and trailing silence: 5 ms frames whose RMS is more than
    45 dB below the loudest frame's."""
    nf = len(x) // frame
    if nf == 0:
        return x
    rms = np.sqrt(np.mean(x[:nf * frame].reshape(nf, frame) ** 2, axis=1))
    thr = max(rms.max() * 10 ** (rel_db / 20), 1e-5)
    on = np.flatnonzero(rms > thr)
    if len(on) == 0:
        return x[:0]
    return x[max(0, on[0] * frame - pad):min(len(x), (on[-1] + 1) * frame + pad)]


# --------------------------------------------------------------------------
# Noise
# --------------------------------------------------------------------------

NOISE_COLOURS = ("white", "pink", "brown")

#: Folder of the Debian package pocketsphinx-testdata (real recorded speech,
#: used at a low level as background babble).
POCKETSPHINX_TEST_DIR = Path("/usr/share/pocketsphinx/test/data")
#: goforward.raw says "go forward ten meters": "go" is a keyword.
_BABBLE_EXCLUDE = {"goforward.raw"}


def _colored_noise(rng: np.random.Generator, colour: str, n: int = CLIP_SAMPLES) -> np.ndarray:
    """Unit-RMS white (flat), pink (1/f) or brown (1/f^2) noise."""
    w = rng.standard_normal(n)
    if colour != "white":
        alpha = {"pink": 1.0, "brown": 2.0}[colour]
        spec = np.fft.rfft(w)
        f = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
        scale = np.maximum(f, 20.0) ** (-alpha / 2)
        scale[0] = 0.0
        w = np.fft.irfft(spec * scale, n)
    return w / np.sqrt(np.mean(w ** 2))


def babble_dir() -> Path:
    """``$RNNACCEL_KWS_BABBLE_DIR``, else :data:`POCKETSPHINX_TEST_DIR`."""
    return Path(os.environ.get("RNNACCEL_KWS_BABBLE_DIR", POCKETSPHINX_TEST_DIR))


def babble_files(root: Path | None = None) -> list[Path]:
    """Recorded speech files used as background babble (empty if
    pocketsphinx-testdata is not installed)."""
    root = Path(root) if root is not None else babble_dir()
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix in (".wav", ".raw")
                  and p.name not in _BABBLE_EXCLUDE and p.is_file())


@lru_cache(maxsize=None)
def _babble_bank() -> tuple[np.ndarray, str]:
    """All babble files, each scaled to unit RMS, concatenated (16 kHz);
    plus a digest of the files for the cache key ("none" if absent)."""
    parts, h = [], hashlib.sha256()
    for p in babble_files():
        if p.suffix == ".raw":   # pocketsphinx raw files: 16 kHz, int16 LE, mono
            x = np.fromfile(p, "<i2").astype(np.float64) / 32768.0
        else:
            x = _read_wav(p)
        rms = np.sqrt(np.mean(x ** 2)) if len(x) else 0.0
        if len(x) < CLIP_SAMPLES or rms <= 0:
            continue
        parts.append(x / rms)
        h.update(p.name.encode() + str(len(x)).encode())
    if not parts:
        if multiprocessing.parent_process() is None:   # once, in the main process
            warnings.warn("pocketsphinx-testdata not installed (no recorded speech under "
                          f"{babble_dir()}): synthetic KWS clips get generated noise "
                          "only, no background speech", stacklevel=2)
        return np.zeros(0), "none"
    return np.concatenate(parts), h.hexdigest()[:10]


def _babble(rng: np.random.Generator) -> tuple[np.ndarray, int]:
    bank, _ = _babble_bank()
    start = int(rng.integers(0, len(bank) - CLIP_SAMPLES + 1))
    seg = bank[start:start + CLIP_SAMPLES]
    return seg / max(np.sqrt(np.mean(seg ** 2)), 0.1), start


# --------------------------------------------------------------------------
# Synthetic clips
# --------------------------------------------------------------------------

SPEED_RANGE = (120, 230)        # espeak-ng -s, words per minute (default 175)
PITCH_RANGE = (15, 85)          # espeak-ng -p, 0..99 (default 50)
PUNCTUATION = (".", "!", "?", ",")   # changes the intonation of the word
SPEECH_DB = (-32.0, -10.0)      # RMS of the spoken word, dBFS
SILENCE_DB = (-85.0, -50.0)     # RMS of _silence_ noise, dBFS
SNR_DB = (5.0, 35.0)            # speech to coloured noise
BABBLE_SNR_DB = (12.0, 35.0)    # speech to background speech
P_NO_NOISE = 0.1
P_BABBLE = 0.35
MAX_WORD = CLIP_SAMPLES - 320   # longer trimmed words are time-compressed


def _db(x: float) -> float:
    return 20.0 * math.log10(max(x, 1e-12))


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x ** 2))) if len(x) else 0.0


def clip_label(seed: int, split: str, index: int) -> int:
    """Label of clip ``index``: clips come in blocks of 12 holding each class
    once, in an order shuffled per block (so silence and unknown are each
    1/12 of the data, like one keyword: TF's silence_percentage=10,
    unknown_percentage=10)."""
    block, pos = divmod(index, len(LABELS))
    rng = np.random.default_rng([GENERATOR_VERSION, seed, _SPLIT_IDS[split], 1, block])
    return int(rng.permutation(len(LABELS))[pos])


def _make_clip(seed: int, split: str, index: int) -> tuple[np.ndarray, int, dict]:
    label = clip_label(seed, split, index)
    rng = np.random.default_rng([GENERATOR_VERSION, seed, _SPLIT_IDS[split], 0, index])
    have_babble = _babble_bank()[1] != "none"
    x = np.zeros(CLIP_SAMPLES)
    meta = {"split": split, "index": index, "label": LABELS[label]}
    noise = []
    if label == 0:
        meta["word"] = None
        colour = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
        level = float(rng.uniform(*SILENCE_DB))
        x += _colored_noise(rng, colour) * 10 ** (level / 20)
        noise.append({"type": colour, "level_db": round(level, 2)})
        if have_babble and rng.random() < P_BABBLE:
            blevel = level - float(rng.uniform(0.0, 10.0))
            seg, start = _babble(rng)
            x += seg * 10 ** (blevel / 20)
            noise.append({"type": "babble", "level_db": round(blevel, 2), "start": start})
    else:
        if label == 1:
            word = UNKNOWN_WORDS[int(rng.integers(len(UNKNOWN_WORDS)))]
        else:
            word = LABELS[label]
        fams = SPLIT_FAMILIES[split]
        family = fams[int(rng.integers(len(fams)))]
        variants = VARIANT_FAMILIES[family][1]
        variant = variants[int(rng.integers(len(variants)))]
        lang = ESPEAK_LANGUAGES[int(rng.integers(len(ESPEAK_LANGUAGES)))]
        speed = int(rng.integers(SPEED_RANGE[0], SPEED_RANGE[1] + 1))
        pitch = int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1))
        punct = PUNCTUATION[int(rng.integers(len(PUNCTUATION)))]
        voice = voice_name(lang, variant)
        speech = _trim(synthesize(word + punct, voice, speed, pitch))
        if len(speech) == 0:
            raise RuntimeError(f"espeak-ng produced silence for {word!r} with voice {voice!r}")
        squeezed = len(speech) > MAX_WORD
        if squeezed:
            from scipy.signal import resample
            speech = resample(speech, MAX_WORD)
        level = float(rng.uniform(*SPEECH_DB))
        gain = 10 ** (level / 20) / _rms(speech)
        peak = float(np.max(np.abs(speech))) * gain
        if peak > 0.95:
            gain *= 0.95 / peak
        speech = speech * gain
        speech_rms = _rms(speech)
        offset = int(rng.integers(0, CLIP_SAMPLES - len(speech) + 1))
        x[offset:offset + len(speech)] = speech
        meta.update(word=word, voice=voice, lang=lang, variant=variant, family=family,
                    speed=speed, pitch=pitch, punct=punct, speech_db=round(_db(speech_rms), 2),
                    offset=offset, length=len(speech), squeezed=squeezed)
        if rng.random() >= P_NO_NOISE:
            colour = NOISE_COLOURS[int(rng.integers(len(NOISE_COLOURS)))]
            snr = float(rng.uniform(*SNR_DB))
            x += _colored_noise(rng, colour) * speech_rms / 10 ** (snr / 20)
            noise.append({"type": colour, "snr_db": round(snr, 2)})
        if have_babble and rng.random() < P_BABBLE:
            snr = float(rng.uniform(*BABBLE_SNR_DB))
            seg, start = _babble(rng)
            x += seg * speech_rms / 10 ** (snr / 20)
            noise.append({"type": "babble", "snr_db": round(snr, 2), "start": start})
    meta["noise"] = noise
    peak = float(np.max(np.abs(x)))
    if peak > 0.99:   # never clip: scale the whole mix down
        x *= 0.99 / peak
        meta["limited_db"] = round(_db(0.99 / peak), 2)
    return _to_int16(x), label, meta


def _make_chunk(args):
    seed, split, start, stop = args
    audio = np.empty((stop - start, CLIP_SAMPLES), np.int16)
    labels = np.empty(stop - start, np.int64)
    metas = []
    for k, i in enumerate(range(start, stop)):
        audio[k], labels[k], m = _make_clip(seed, split, i)
        metas.append(m)
    return start, audio, labels, metas


def default_cache_dir() -> Path:
    """``$RNNACCEL_KWS_CACHE``, else ``<repo>/cache/kws`` (else ./cache/kws
    when this module is not inside the repository)."""
    env = os.environ.get("RNNACCEL_KWS_CACHE")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file():
        return repo / "cache" / "kws"
    return Path.cwd() / "cache" / "kws"


def cache_path(split: str, n: int, seed: int = 0, cache_dir=None) -> Path:
    """Where :func:`generate` caches ``(split, n, seed)``; the name also holds
    the generator version, the espeak-ng version and the babble files."""
    info = espeak_info()
    tag = f"g{GENERATOR_VERSION}-espeak{info['version']}-babble{_babble_bank()[1]}"
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return base / f"synth_{split}_n{n}_seed{seed}_{tag}.npz"


def _check_args(split, n, seed):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, not {n!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")


def generate(split: str, n: int, seed: int = 0, cache_dir=None, progress: bool = True,
             workers: int | None = None, chunk: int = 24):
    """Generate (or load from the cache) ``n`` synthetic clips of ``split``.

    Returns ``(audio int16 [n, 16000], labels int64 [n], meta list of n dicts)``.
    The result is bit-exact for given (split, n, seed) and environment
    (espeak-ng version) whatever ``workers``; clip ``i`` does not depend on
    ``n``, so a smaller ``n`` gives a prefix of a larger one.  ``cache_dir``
    defaults to :func:`default_cache_dir`; ``cache_dir=False`` disables the
    cache.  ``workers`` defaults to min(2, CPUs).
    """
    _check_args(split, n, seed)
    n, seed = int(n), int(seed)
    path = None if cache_dir is False else cache_path(split, n, seed, cache_dir)
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            return f["audio"], f["labels"], json.loads(str(f["meta"]))
    espeak_info()
    _babble_bank()   # load before forking; warns once if missing
    audio = np.empty((n, CLIP_SAMPLES), np.int16)
    labels = np.empty(n, np.int64)
    meta: list = [None] * n
    jobs = [(seed, split, s, min(s + chunk, n)) for s in range(0, n, chunk)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    from tqdm import tqdm
    bar = tqdm(total=n, desc=f"kws synth {split}", unit="clip", disable=not progress,
               file=sys.stderr)
    try:
        if workers <= 1 or len(jobs) <= 1:
            results = map(_make_chunk, jobs)
            pool = None
        else:
            methods = multiprocessing.get_all_start_methods()
            if "forkserver" in methods:   # fork is unsafe once torch has started threads
                ctx = multiprocessing.get_context("forkserver")
                ctx.set_forkserver_preload([__name__, "scipy.signal"])
            else:
                ctx = multiprocessing.get_context("spawn")
            pool = ctx.Pool(min(workers, len(jobs)))
            results = pool.imap_unordered(_make_chunk, jobs)
        try:
            for start, a, lab, m in results:
                audio[start:start + len(lab)] = a
                labels[start:start + len(lab)] = lab
                meta[start:start + len(lab)] = m
                bar.update(len(lab))
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()
    finally:
        bar.close()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "wb") as fh:
            np.savez(fh, audio=audio, labels=labels, meta=np.array(json.dumps(meta)))
        os.replace(tmp, path)
    return audio, labels, meta


# --------------------------------------------------------------------------
# Google Speech Commands
# --------------------------------------------------------------------------

BACKGROUND_NOISE_DIR = "_background_noise_"
_MAX_NUM_WAVS_PER_CLASS = 2 ** 27 - 1


def which_set(filename: str, validation_percentage: float = 10, testing_percentage: float = 10) -> str:
    """TF speech_commands' hash split of a file by speaker (the part of the
    name before ``_nohash_``): 'train', 'val' or 'test'.  Used when the data
    set has no validation/testing lists."""
    hash_name = re.sub(r"_nohash_.*$", "", os.path.basename(filename))
    h = int(hashlib.sha1(hash_name.encode()).hexdigest(), 16)
    pct = (h % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if pct < validation_percentage:
        return "val"
    if pct < validation_percentage + testing_percentage:
        return "test"
    return "train"


def _read_list(path: Path) -> set[str]:
    return {ln.strip() for ln in path.read_text().splitlines() if ln.strip()}


def _fit(x: np.ndarray) -> np.ndarray:
    if len(x) >= CLIP_SAMPLES:
        return x[:CLIP_SAMPLES]
    return np.pad(x, (0, CLIP_SAMPLES - len(x)))


def load_speech_commands(root, split: str, seed: int = 0, silence_pct: float = 10,
                         unknown_pct: float = 10, validation_pct: float = 10,
                         testing_pct: float = 10, progress: bool = False):
    """Load one split of Google Speech Commands (v0.01 or v0.02 layout).

    As TF's ``speech_commands/input_data.py`` (Hello Edge):

    * files listed in ``validation_list.txt`` are 'val', those in
      ``testing_list.txt`` 'test', all others 'train' (without the lists, the
      ``_nohash_`` speaker hash of :func:`which_set` decides);
    * folders named after a keyword give that label; all other word folders
      are ``_unknown_``, of which ``ceil(known * unknown_pct / 100)`` are
      sampled at random, ``known`` being the split's keyword clip count;
    * ``ceil(known * silence_pct / 100)`` ``_silence_`` clips are a random
      1 s crop of a random ``_background_noise_`` file at a random volume
      uniform in [0, 1];
    * clips shorter than 1 s are zero-padded at the end (longer ones cut).

    The clips are shuffled; everything random follows ``seed``.  Returns
    ``(audio int16 [n, 16000], labels int64 [n], meta list of dicts)``.
    """
    _check_args(split, 0, seed)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Speech Commands folder not found: {root}")
    lists = {s: root / f"{name}_list.txt" for s, name in (("val", "validation"), ("test", "testing"))}
    use_lists = any(p.is_file() for p in lists.values())
    listed = {s: _read_list(p) if p.is_file() else set() for s, p in lists.items()}
    known, unknown = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if d.name.startswith(("_", ".")):
            continue
        for f in sorted(d.glob("*.wav")):
            rel = f"{d.name}/{f.name}"
            if use_lists:
                s = "val" if rel in listed["val"] else "test" if rel in listed["test"] else "train"
            else:
                s = which_set(rel, validation_pct, testing_pct)
            if s != split:
                continue
            (known if d.name in KEYWORDS else unknown).append(rel)
    rng = np.random.default_rng([seed, _SPLIT_IDS[split], 2])
    n_unknown = min(len(unknown), int(math.ceil(len(known) * unknown_pct / 100)))
    n_silence = int(math.ceil(len(known) * silence_pct / 100))
    chosen_unknown = [unknown[i] for i in rng.permutation(len(unknown))[:n_unknown]]
    entries = [(rel, rel.split("/")[0]) for rel in known + chosen_unknown]
    entries += [(None, SILENCE_LABEL)] * n_silence
    order = rng.permutation(len(entries))
    entries = [entries[i] for i in order]

    backgrounds = []
    if n_silence:
        bg_dir = root / BACKGROUND_NOISE_DIR
        bg_files = sorted(bg_dir.glob("*.wav")) if bg_dir.is_dir() else []
        if not bg_files:
            raise FileNotFoundError(f"no {BACKGROUND_NOISE_DIR}/*.wav under {root}: "
                                    "needed for _silence_ clips (or pass silence_pct=0)")
        backgrounds = [(p.name, _fit(x) if len(x) < CLIP_SAMPLES else x)
                       for p in bg_files for x in [_read_wav(p)]]

    audio = np.zeros((len(entries), CLIP_SAMPLES), np.int16)
    labels = np.empty(len(entries), np.int64)
    meta = []
    from tqdm import tqdm
    for k, (rel, word) in enumerate(tqdm(entries, desc=f"speech commands {split}",
                                         unit="clip", disable=not progress, file=sys.stderr)):
        if rel is None:
            b = int(rng.integers(len(backgrounds)))
            name, bg = backgrounds[b]
            offset = int(rng.integers(0, len(bg) - CLIP_SAMPLES + 1))
            volume = float(rng.uniform(0.0, 1.0))
            audio[k] = _to_int16(np.clip(bg[offset:offset + CLIP_SAMPLES] * volume, -1.0, 1.0))
            labels[k] = 0
            meta.append({"split": split, "label": SILENCE_LABEL, "word": None,
                         "path": f"{BACKGROUND_NOISE_DIR}/{name}", "offset": offset,
                         "volume": volume})
        else:
            audio[k] = _fit(_read_wav(root / rel, dtype_int16=True))
            lab = LABELS.index(word) if word in KEYWORDS else 1
            labels[k] = lab
            meta.append({"split": split, "label": LABELS[lab], "word": word, "path": rel,
                         "speaker": os.path.basename(rel).split("_nohash_")[0]})
    return audio, labels, meta
