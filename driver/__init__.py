"""rnnaccel.driver: run model images on the accelerator (or its models) from Python.

    from rnnaccel.driver import open_device
    with open_device("host://") as dev:          # or uart://127.0.0.1:PORT?csr=csr.csv, pynq://..., uio://...
        m = dev.load("gru_s.rnna")
        logits = m.run(features)                 # every inference cross-checked with the host simulator

See docs/driver.md for the URIs, the transports and the cross-check.
"""
from .device import (Device, DeviceFault, DeviceTimeout, ImageDoesNotFit, Mismatch, MismatchError, Model,
                     RunInfo)
from .transport import CsrMap, DriverError, TransportError
from .uri import open_device, open_transport

__all__ = ["open_device", "open_transport", "Device", "Model", "RunInfo", "Mismatch", "MismatchError",
           "DeviceTimeout", "DeviceFault", "ImageDoesNotFit", "DriverError", "TransportError", "CsrMap"]
