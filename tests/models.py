"""The model zoo (rnnaccel.host.zoo) under the name the tests import."""
from rnnaccel.host.zoo import C, H, I, T, _fc, _gru, _lstm, families, inputs  # noqa: F401
