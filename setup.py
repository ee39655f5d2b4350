"""Build of the driver's C core (cffi, API mode); everything else is in pyproject.toml.

Set RNNACCEL_NO_DRIVER_CORE=1 to install without it (host tools only; the driver then refuses to
open a device and says why).
"""
import os
import shutil
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext

NO_CORE = os.environ.get("RNNACCEL_NO_DRIVER_CORE") == "1"


class BuildExt(build_ext):
    def run(self):
        cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
        if not (shutil.which(cc) or shutil.which("cc") or shutil.which("gcc")):
            raise SystemExit(
                f"rnnaccel: building the driver's C core (driver/core.c, through cffi) needs a C compiler, "
                f"and none was found ({cc!r}, cc, gcc are not on PATH). Install one (Debian/Ubuntu/PYNQ: "
                f"`sudo apt-get install gcc`), or install without the driver: RNNACCEL_NO_DRIVER_CORE=1 pip install ...")
        try:
            super().run()
        except Exception as e:  # compiler present but failing: say what was being built
            raise SystemExit(f"rnnaccel: compiling the driver's C core failed: {e}. Is a working C compiler "
                             f"and the Python development headers (python3-dev) installed?") from e


setup(cffi_modules=[] if NO_CORE else ["driver/_build.py:ffibuilder"], cmdclass={"build_ext": BuildExt})
