"""A PYNQ `Device` whose register accesses go to a board over the UARTBone bridge.

PYNQ's `MMIO` talks to any `pynq.Device` with capability REGISTER_RW (`read_registers`,
`write_registers`), so this routes the `pynq://` transport to the simulated board (or a board's
UART bridge) on a machine without PL hardware: the same driver code that runs on a PYNQ board's
ARM runs here against the simulated SoC.

    dev = BridgeDevice("127.0.0.1", port)
    open_device("pynq://?csr=csr.csv", pynq_device=dev)   # or rnnaccel.driver.transport.Pynq(..., device=dev)
"""
from __future__ import annotations

import numpy as np
import pynq

from .transport import UartBone


class BridgeDevice(pynq.Device):
    def __init__(self, host="127.0.0.1", port=1234, tag="rnnaccel-bridge"):
        super().__init__(tag)
        self.capabilities = {"REGISTER_RW": True}
        self.bridge = UartBone(host, port)
        self.name = f"bridge {host}:{port}"

    def read_registers(self, address, length):
        n = -(-length // 4)
        return self.bridge.read(address, n).astype("<u4").tobytes()[:length]

    def write_registers(self, address, data):
        w = np.frombuffer(bytes(data) + bytes(-len(data) % 4), "<u4")
        self.bridge.write(address, w)

    def close(self):
        self.bridge.close()
