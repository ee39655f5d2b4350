"""The model image ("loadable", *.rnna): one binary file per compiled model.

Layout (all little-endian, every section 64-byte aligned; docs/image-format.md):

    header   HEADER_SIZE bytes, struct HEADER_FMT (fields below)
    program  n_instr * isa.INSTR_BYTES
    params   int32 biases and int8 codebooks, addressed by byte offset from the section start
    weights  packed weight streams (compression.py format), byte offsets from the section start
    consts   int16 vectors copied into the CONST vector space at load (peephole weights)
    meta     UTF-8 JSON: name, labels, layer table, state map, front end (not read by hardware)

The CRC32 covers the whole image with the crc field taken as zero. Several images can be resident
in accelerator memory at once: every offset in an image is relative to its own sections, and
its state lives in a per-model context.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

from . import isa
from .spec import ALIGN

MAGIC = b"RNNA"
VERSION = 1
HEADER_SIZE = 128
# magic, version, header_size, total_size, crc32, flags,
# program (off, len), params (off, len), weights (off, len), consts (off, len), meta (off, len),
# state_words, scratch_words, const_words, pp_dist, in_features, in_frac, out_features, out_frac,
# max_steps, out_step_stride, weight_modes (bitmask of bits values), max_k, macs_per_step
HEADER_FMT = "<4sHHII I 10I IIII HhHh HH I I I"
FLAG_STREAMABLE = 1 << 0   # state persists between runs; one step at a time is allowed
FLAG_SEQ_OUTPUT = 1 << 1   # an output vector per step (OUT[t * out_step_stride])

_HEADER_KEYS = ("magic", "version", "header_size", "total_size", "crc32", "flags",
                "program_off", "program_len", "params_off", "params_len", "weights_off", "weights_len",
                "consts_off", "consts_len", "meta_off", "meta_len",
                "state_words", "scratch_words", "const_words", "pp_dist",
                "in_features", "in_frac", "out_features", "out_frac",
                "max_steps", "out_step_stride", "weight_modes", "max_k", "macs_per_step")
assert struct.calcsize(HEADER_FMT) <= HEADER_SIZE


class ImageError(ValueError):
    """A model image that cannot be used: the message says what is wrong and what to do."""


def _pad(b: bytes) -> bytes:
    return b + bytes(-len(b) % ALIGN)


@dataclass
class Image:
    program: list                      # isa.Instr
    params: bytes = b""
    weights: bytes = b""
    consts: bytes = b""
    meta: dict = field(default_factory=dict)
    flags: int = 0
    state_words: int = 0
    scratch_words: int = 0
    pp_dist: int = 0
    in_features: int = 0
    in_frac: int = 0
    out_features: int = 0
    out_frac: int = 0
    max_steps: int = 1
    out_step_stride: int = 0
    weight_modes: int = 0
    max_k: int = 0
    macs_per_step: int = 0

    @property
    def const_words(self):
        return len(self.consts) // 2

    @property
    def streamable(self):
        return bool(self.flags & FLAG_STREAMABLE)

    @property
    def seq_output(self):
        return bool(self.flags & FLAG_SEQ_OUTPUT)

    # ---- serialisation ---------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        sections = [_pad(isa.encode_program(self.program)), _pad(self.params), _pad(self.weights),
                    _pad(self.consts), _pad(json.dumps(self.meta, sort_keys=True).encode())]
        raw_len = [len(self.program) * isa.INSTR_BYTES, len(self.params), len(self.weights),
                   len(self.consts), len(json.dumps(self.meta, sort_keys=True).encode())]
        offs, pos = [], HEADER_SIZE
        for s in sections:
            offs.append(pos)
            pos += len(s)
        secs = []
        for o, n in zip(offs, raw_len):
            secs += [o, n]
        values = [MAGIC, VERSION, HEADER_SIZE, pos, 0, self.flags, *secs,
                  self.state_words, self.scratch_words, self.const_words, self.pp_dist,
                  self.in_features, self.in_frac, self.out_features, self.out_frac,
                  self.max_steps, self.out_step_stride, self.weight_modes, self.max_k, self.macs_per_step]
        header = struct.pack(HEADER_FMT, *values).ljust(HEADER_SIZE, b"\0")
        body = header + b"".join(sections)
        crc = zlib.crc32(body)
        return body[:12] + struct.pack("<I", crc) + body[16:]

    def save(self, path):
        data = self.to_bytes()
        with open(path, "wb") as f:
            f.write(data)
        return len(data)

    @classmethod
    def from_bytes(cls, data: bytes, what="image") -> "Image":
        h = read_header(data, what)
        def sec(name):
            o, n = h[name + "_off"], h[name + "_len"]
            return bytes(data[o:o + n])
        try:
            program = isa.decode_program(sec("program"))
        except isa.DecodeError as e:
            raise ImageError(f"{what}: bad program: {e}") from None
        try:
            meta = json.loads(sec("meta").decode()) if h["meta_len"] else {}
        except ValueError as e:
            raise ImageError(f"{what}: metadata is not valid JSON ({e})") from None
        for ins, note in zip(program, meta.get("notes", [])):
            ins.note = note
        img = cls(program=program, params=sec("params"), weights=sec("weights"), consts=sec("consts"),
                  meta=meta)
        for k in ("flags", "state_words", "scratch_words", "pp_dist", "in_features", "in_frac",
                  "out_features", "out_frac", "max_steps", "out_step_stride", "weight_modes", "max_k",
                  "macs_per_step"):
            setattr(img, k, h[k])
        return img

    @classmethod
    def load(cls, path) -> "Image":
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ImageError(f"cannot read image {path}: {e.strerror}") from None
        return cls.from_bytes(data, what=str(path))


def read_header(data: bytes, what="image") -> dict:
    """Parse and verify the header: magic, version, size and CRC. Raises ImageError naming the fault."""
    if len(data) < HEADER_SIZE:
        raise ImageError(f"{what}: truncated: {len(data)} bytes, a header alone is {HEADER_SIZE}")
    h = dict(zip(_HEADER_KEYS, struct.unpack_from(HEADER_FMT, data)))
    if h["magic"] != MAGIC:
        raise ImageError(f"{what}: not an rnnaccel image (magic {h['magic']!r}, expected {MAGIC!r}); "
                         f"compile a model with `rnnaccel compile`")
    if h["version"] != VERSION:
        raise ImageError(f"{what}: image format version {h['version']} is not supported by this "
                         f"software (supports {VERSION}); recompile the model")
    if h["header_size"] != HEADER_SIZE:
        raise ImageError(f"{what}: header size {h['header_size']}, expected {HEADER_SIZE}")
    if len(data) < h["total_size"]:
        raise ImageError(f"{what}: truncated: {len(data)} of {h['total_size']} bytes")
    if len(data) > h["total_size"]:
        raise ImageError(f"{what}: {len(data) - h['total_size']} unexpected bytes after the image")
    body = bytearray(data)
    body[12:16] = b"\0\0\0\0"
    crc = zlib.crc32(body)
    if crc != h["crc32"]:
        raise ImageError(f"{what}: CRC mismatch (stored {h['crc32']:#010x}, computed {crc:#010x}): "
                         f"the image is corrupt")
    for name in ("program", "params", "weights", "consts", "meta"):
        if h[name + "_off"] + h[name + "_len"] > h["total_size"]:
            raise ImageError(f"{what}: section {name} runs past the end of the image")
    return h
