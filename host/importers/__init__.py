"""Importers: framework models -> rnnaccel IR.

``from_torch``, ``from_onnx`` and ``load_model`` are resolved lazily, so ``rnnaccel.host`` works
without torch or onnx installed.
The graph-interpretation machinery the ONNX and PyTorch importers share is in ``graph.py``.
"""
from __future__ import annotations

import os

from ..ir import Model, ModelError

__all__ = ["from_torch", "from_onnx", "load_model"]


def __getattr__(name):
    if name == "from_torch":
        from .torch_import import from_torch
        return from_torch
    if name == "from_onnx":
        from .onnx_import import from_onnx
        return from_onnx
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_model(path, **kwargs) -> Model:
    """Load a model file by extension: .onnx, .pt/.pth (full torch module or TorchScript), .pb (TF),
    .npz (rnnaccel float model file, ``kws.train.save_model``)."""
    ext = os.path.splitext(str(path))[1].lower()
    if ext == ".onnx":
        from .onnx_import import from_onnx
        return from_onnx(path, **kwargs)
    if ext in (".pt", ".pth"):
        from .torch_import import load_torch
        return load_torch(path, **kwargs)
    if ext == ".pb":
        from .tf_graph import load_tf_graph
        return load_tf_graph(path, **kwargs)
    if ext == ".npz":  # float model files written by rnnaccel.host.kws.train.save_model
        from ..kws.train import load_model_npz
        return load_model_npz(path, **kwargs)
    raise ModelError(f"{path}: unknown model format {ext!r} (supported: .onnx, .pt, .pth, .pb, .npz)")
