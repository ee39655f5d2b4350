"""Model image format and program encoding: round trip and every way a file can be broken."""
import struct

import numpy as np
import pytest

from rnnaccel.host import image as image_mod
from rnnaccel.host import isa
from rnnaccel.host.compiler import compile_model
from rnnaccel.host.image import HEADER_SIZE, Image, ImageError

from .models import families, inputs


@pytest.fixture(scope="module")
def img():
    m = families()["lstm_peep_proj"]
    return compile_model(m, inputs(m, 16), bits=4)


def test_round_trip_identical(img, tmp_path):
    path = tmp_path / "m.rnna"
    n = img.save(path)
    back = Image.load(path)
    assert n == path.stat().st_size and n % 64 == 0
    assert back.program == img.program  # every field of every instruction
    assert isa.encode_program(back.program) == isa.encode_program(img.program)
    for k in ("params", "weights", "consts", "meta", "flags", "state_words", "scratch_words", "pp_dist",
              "in_frac", "out_frac", "max_steps", "weight_modes", "macs_per_step"):
        assert getattr(back, k) == getattr(img, k), k
    assert back.to_bytes() == img.to_bytes()


def test_every_instruction_round_trips(img):
    for ins in img.program:
        assert isa.decode(isa.encode(ins)) == ins


def test_crc_mismatch(img):
    data = bytearray(img.to_bytes())
    data[HEADER_SIZE + 70] ^= 0x10  # flip one bit of the program
    with pytest.raises(ImageError, match="CRC mismatch"):
        Image.from_bytes(bytes(data))


def test_wrong_magic(img):
    data = b"ONNX" + img.to_bytes()[4:]
    with pytest.raises(ImageError, match="not an rnnaccel image"):
        Image.from_bytes(data)


@pytest.mark.parametrize("cut", [10, HEADER_SIZE - 1, HEADER_SIZE + 5, -1])
def test_truncation(img, cut):
    data = img.to_bytes()
    with pytest.raises(ImageError, match="truncated"):
        Image.from_bytes(data[:cut])


def test_trailing_garbage(img):
    with pytest.raises(ImageError, match="unexpected bytes"):
        Image.from_bytes(img.to_bytes() + b"\0")


def test_unknown_version(img):
    data = bytearray(img.to_bytes())
    struct.pack_into("<H", data, 4, image_mod.VERSION + 1)
    with pytest.raises(ImageError, match="version"):
        Image.from_bytes(bytes(data))


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        Image.load(tmp_path / "nope.rnna")


def test_illegal_opcode_is_an_error_not_a_hang():
    words = np.zeros(isa.INSTR_WORDS, "<u4")
    with pytest.raises(isa.DecodeError) as e:
        isa.decode(words.tobytes())
    assert e.value.code == isa.ERR_OPCODE
    words[0] = isa.OP_MATVEC | (7 << 16)  # weight mode code 7 does not exist
    with pytest.raises(isa.DecodeError) as e:
        isa.decode(words.tobytes())
    assert e.value.code == isa.ERR_FIELD


def test_field_overflow_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        isa.encode(isa.Instr(isa.OP_MATVEC, rows=1 << 16, a=isa.Operand(isa.SPACE_IN, 0), a_len=1,
                             dst=isa.Operand(isa.SPACE_OUT, 0)))


def test_fields_do_not_overlap():
    used = {}
    for name, (w, lsb, width, _) in isa.FIELDS.items():
        for b in range(lsb, lsb + width):
            if name == "count":  # LOOP reuses MATVEC's rows field
                continue
            assert (w, b) not in used, f"{name} overlaps {used.get((w, b))}"
            used[w, b] = name
        assert lsb + width <= 32
