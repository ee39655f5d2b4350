"""The keyword-spotting demo pieces: windows, detector, built-in stream, the demo end to end."""
import json

import numpy as np
import pytest

from rnnaccel.host.kws import data, stream

needs_espeak = pytest.mark.skipif(not data.espeak_info().get("exe"), reason="espeak-ng not installed")


def test_windower_yields_last_frames_every_hop():
    w = stream.Windower(size=4, hop=2)
    got = [w.push(np.full(3, k)) for k in range(9)]
    assert [g is not None for g in got] == [False, False, False, True, False, True, False, True, False]
    assert got[5][:, 0].tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="hop"):
        stream.Windower(4, 5)


def _post(label, p=0.9):
    v = np.full(len(data.LABELS), (1 - p) / (len(data.LABELS) - 1))
    v[data.LABELS.index(label)] = p
    return v


def test_detector_fires_once_per_word_and_not_on_silence():
    d = stream.Detector(smooth=2, threshold=0.7, release=0.3, refractory=2)
    seq = ["_silence_"] * 3 + ["go"] * 6 + ["_silence_"] * 4 + ["go"] * 3 + ["_unknown_"] * 5 + ["stop"] * 3
    fired = [k for s in seq if (k := d.push(_post(s)))]
    assert fired == ["go", "go", "stop"]


def test_detector_needs_release_before_refiring():
    d = stream.Detector(smooth=1, threshold=0.7, release=0.3, refractory=0)
    fired = [k for p in (0.9, 0.5, 0.9, 0.2, 0.9) if (k := d.push(_post("yes", p)))]
    assert fired == ["yes", "yes"]            # the dip to 0.5 does not re-arm, 0.2 does


def test_detector_for_hop_keeps_its_time_constants():
    for hop_s, smooth, refractory in ((0.2, 3, 4), (0.4, 2, 2), (0.04, 15, 20), (2.0, 1, 0)):
        d = stream.Detector.for_hop(hop_s)
        assert (d.smooth, d.refractory) == (smooth, refractory), hop_s
    assert stream.Detector.for_hop(0.4, smooth=5).smooth == 5      # explicit counts win


@needs_espeak
def test_builtin_stream_is_deterministic_and_lists_keywords():
    a, b = stream.builtin_stream(), stream.builtin_stream()
    assert np.array_equal(a.audio, b.audio) and a.audio.dtype == np.int16
    assert a.expected == [w for w, _ in stream.BUILTIN_SCRIPT if w in data.KEYWORDS]
    assert len(a.words) == len(stream.BUILTIN_SCRIPT)
    assert not np.array_equal(a.audio[:16000], stream.builtin_stream(seed=1).audio[:16000])


@needs_espeak
def test_demo_on_host_device_detects_builtin_keywords(capsys):
    from rnnaccel.host.kws import demo
    rc = demo.main(["--device", "host://?lanes=16", "--plain"])
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    assert res["detected"] == res["expected"] and res["all_detected"]
    assert res["mismatches"] == 0 and res["cycle_mismatches"] == 0 and res["checked"]
    assert res["frames"] > 300 and res["inferences"] == (res["frames"] - 25) // 10 + 1   # hop 10
    assert 0.5 < res["mac_utilisation"] <= 1.0


def test_demo_rejects_missing_wav(capsys):
    from rnnaccel.host.kws import demo
    assert demo.main(["--device", "host://", "--wav", "/nonexistent.wav"]) == 2
    assert "nonexistent.wav" in capsys.readouterr().err
