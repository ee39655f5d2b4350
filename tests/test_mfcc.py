"""numpy AudioSpectrogram + Mfcc against the TensorFlow Mfcc output of the Hello Edge graphs."""
import numpy as np
import pytest

from rnnaccel.host.ir import Frontend, ModelError
from rnnaccel.host.mfcc import MfccStream, fit_clip, mel_matrix, mfcc, num_frames

# Front end of each Hello Edge graph (window 640 = 40 ms; Basic_LSTM_S strides 20 ms).
STRIDES = {"GRU_S": 640, "Basic_LSTM_S": 320, "LSTM_S": 640, "DNN_S": 640}


@pytest.fixture(scope="module")
def clips(shared_dir):
    return np.load(shared_dir / "models" / "hello-edge" / "reference" / "clips.npz")


@pytest.mark.parametrize("model", sorted(STRIDES))
def test_mfcc_matches_tensorflow(shared_dir, clips, model):
    ref = np.load(shared_dir / "models" / "hello-edge" / "reference" / f"{model}.npz")["mfcc"]
    fe = Frontend(stride=STRIDES[model])
    assert fe.frames == ref.shape[1]
    got = mfcc(clips["audio"], fe)  # batch of int16 clips
    assert got.shape == ref.shape and got.dtype == np.float32
    err = np.abs(got - ref).max(axis=(1, 2))
    worst = int(err.argmax())
    assert err.max() < 0.01, f"{model}: clip {clips['names'][worst]} differs by {err.max()}"


def test_single_clip_and_float_input_agree(clips):
    fe = Frontend()
    a = clips["audio"][1]
    batch = mfcc(clips["audio"][:3], fe)
    np.testing.assert_array_equal(mfcc(a, fe), batch[1])
    # DecodeWav's float samples are int16 / 32768.
    np.testing.assert_array_equal(mfcc(a.astype(np.float32) / 32768.0, fe), batch[1])


@pytest.mark.parametrize("stride,window", [(320, 640), (640, 640), (1000, 400)])
def test_stream_matches_batch(clips, stride, window):
    fe = Frontend(window_size=window, stride=stride, fft_size=1 << (window - 1).bit_length())
    a = clips["audio"][1]
    stream, out, i = MfccStream(fe), [], 0
    rng = np.random.default_rng(1)
    while i < len(a):
        chunk = a[i:i + int(rng.integers(1, 1500))]
        new = stream.push(chunk)
        i += len(chunk)
        # a frame is emitted as soon as its window is complete, not later
        assert len(out) + len(new) == num_frames(i, fe)
        out += new
    np.testing.assert_allclose(np.array(out), mfcc(a, fe), rtol=0, atol=1e-6)


def test_frame_count_and_short_audio():
    fe = Frontend(stride=320)
    assert num_frames(16000, fe) == 49 and num_frames(639, fe) == 0
    assert mfcc(np.zeros(639, np.int16), fe).shape == (0, 10)
    assert fit_clip(np.ones(100, np.int16), fe).shape == (16000,)
    assert fit_clip(np.ones(17000, np.int16), fe).shape == (16000,)


def test_filterbank_follows_tensorflow():
    # 513 bins of 15.625 Hz: TF uses bins 2..256 only (DC excluded, 20 Hz -> int(1.5 + 1.28) = 2).
    W = mel_matrix(513, 16000.0, 40, 20.0, 4000.0)
    used = np.nonzero(W.sum(axis=1))[0]
    assert used.min() == 2 and used.max() <= 256
    # inside the band every bin splits its magnitude between two neighbouring channels
    inner = W[10:240]
    np.testing.assert_allclose(inner.sum(axis=1), 1.0, atol=1e-12)
    assert ((inner > 0).sum(axis=1) <= 2).all()


def test_bad_input():
    with pytest.raises(ModelError, match="dtype"):
        mfcc(np.zeros(16000, np.int32), Frontend())
    with pytest.raises(ModelError, match="power of two"):
        mfcc(np.zeros(16000, np.int16), Frontend(fft_size=2048))
