"""cffi (API mode) build of the driver's C core, `rnnaccel.driver._core`.

Run by setuptools at install time (setup.py: cffi_modules) and usable by hand:
`python driver/_build.py` builds the extension next to this file.
"""
import os
import re
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent
HEADER = (HERE / "core.h").read_text()


def _cdef(header: str) -> str:
    """core.h without the preprocessor lines, in the form cffi's cdef parses."""
    text = re.sub(r"/\*.*?\*/", "", header, flags=re.S)
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#define") and len(s.split()) == 3:
            lines.append(s)
        elif not s.startswith("#"):
            lines.append(line)
    return "\n".join(lines)


ffibuilder = FFI()
ffibuilder.cdef(_cdef(HEADER) + """
extern "Python+C" int rna_py_read(void *ctx, uint64_t addr, uint32_t *buf, uint32_t n);
extern "Python+C" int rna_py_write(void *ctx, uint64_t addr, const uint32_t *buf, uint32_t n);
""")
ffibuilder.set_source("rnnaccel.driver._core", '#include "core.h"',
                      sources=[os.path.relpath(HERE / "core.c")],
                      include_dirs=[str(HERE)], extra_compile_args=["-O2", "-std=c99"])

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE / "build"), verbose=True)
