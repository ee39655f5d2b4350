# rnnaccel: one Makefile for the whole product. Every target installs what it needs:
# Debian packages through apt (when root), Python packages into the project venv (.venv).
#
#   make demo    main job: live keyword-spotting demo on the simulated board (DEVICE=uri for a real board)
#   make run     the Hello Edge GRU checked end to end against TensorFlow, run bit-accurately
#   make test    the test suite
#   make bench   benchmarks (numbers recorded in docs/benchmarks.md)
#   make sim-board                 the simulated board on 127.0.0.1 (MACS=32 PORT= BUS=wishbone|axi-lite)
#   make bitstream BOARD=ulx3s     SoC bitstream + register map in bitstreams/BOARD (ulx3s|ecp5-evn|pynq-z2)
#   make regress host-vs-device regression of every model family and weight mode (DEVICE=uri)

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
SHARED ?= ../shared
HELLO  := $(SHARED)/models/hello-edge
BITS   ?= 8

# Debian packages the tools and tests use: espeak-ng + pocketsphinx test audio (synthetic keyword
# data), Verilator (RTL simulation); libevent, json-c, zlib for LiteX's simulated board.
DEBS   := espeak-ng pocketsphinx-testdata verilator g++ make libevent-dev libjson-c-dev zlib1g-dev

.PHONY: setup debs run test bench clean help

help:
	@sed -n 's/^#   //p' Makefile

debs:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (install them as root)"; fi; \
	fi

$(VENV)/.stamp: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e '.[all]' 2>&1 | grep -v "is ignored" || true
	@$(PY) -c "import rnnaccel.host, torch, onnx, onnxruntime, migen, litex, litex_boards" || { echo "python setup failed"; exit 1; }
	@touch $@

setup: debs $(VENV)/.stamp

build:
	@mkdir -p build

run: setup | build
	$(VENV)/bin/rnnaccel reference-check $(HELLO)/GRU_S.pb $(HELLO)/reference --bits $(BITS)
	$(PY) -c "import numpy as np; np.save('build/gru_s_calib.npy', np.load('$(HELLO)/reference/GRU_S.npz')['mfcc'])"
	$(VENV)/bin/rnnaccel compile $(HELLO)/GRU_S.pb -o build/gru_s.rnna --bits $(BITS) --calib build/gru_s_calib.npy
	$(VENV)/bin/rnnaccel simulate build/gru_s.rnna --data $(HELLO)/reference/GRU_S.npz --show 5

test: setup $(VENV)-pynq/.stamp
	$(VENV)/bin/pytest -q

bench: setup
	$(PY) bench/simulator_throughput.py
	$(PY) bench/reference_table.py
	$(PY) bench/kws_stream.py
	$(PY) bench/simboard_speed.py

clean:
	rm -rf build .pytest_cache

#   make train   reproduce the shipped keyword-spotting model host/kws/models/gru_s.npz
# (synthetic espeak-ng data cached in cache/kws; 15-25 minutes on 2 cores; docs/kws-model-card.md)
.PHONY: train
train: setup
	$(VENV)/bin/rnnaccel kws train --arch gru --out host/kws/models/gru_s.npz --epochs 30 --n-train 24000 --seed 0

# ---- the product's uses: live demo and host-vs-device regression ---------------------------------
DEVICE ?= sim://
.PHONY: demo regress
demo: setup
	$(VENV)/bin/rnnaccel demo --device '$(DEVICE)'

regress: setup
	$(VENV)/bin/rnnaccel regress --device '$(DEVICE)' --hello-edge $(HELLO) --out build/regress

# PYNQ's Python for the driver tests (pynq 4.0 pins numpy<2: a venv of its own, no torch): the suite
# runs tests/test_driver_pynq_board.py in it against the simulated board through pynq.MMIO.
$(VENV)-pynq/.stamp: pyproject.toml setup.py
	@test -x $(VENV)-pynq/bin/python || $(PYTHON) -m venv $(VENV)-pynq
	$(VENV)-pynq/bin/pip install -q "numpy<2" "pynq==4.0" cffi pytest 2>&1 | grep -v "is ignored" || true
	$(VENV)-pynq/bin/pip install -q -e . 2>&1 | grep -v "is ignored" || true
	@$(VENV)-pynq/bin/python -c "import pynq, rnnaccel.driver._core" || { echo ".venv-pynq setup failed"; exit 1; }
	@touch $@

# ---- SoC: simulated board and bitstreams (docs/soc.md) -------------------------------------------------
.PHONY: sim-board bitstream
BOARD ?= ulx3s
MACS  ?=
PORT  ?=
BUS   ?=
sim-board: setup
	$(VENV)/bin/rnnaccel board sim $(if $(MACS),--macs $(MACS)) $(if $(PORT),--port $(PORT)) $(if $(BUS),--bus $(BUS))

# ECP5 boards: YoWASP yosys/nextpnr/ecppack (pip, extra `synth`); pynq-z2: Vivado project (+ .bit with Vivado)
bitstream: setup
	$(VENV)/bin/rnnaccel bitstream --board $(BOARD) $(if $(MACS),--macs $(MACS)) $(if $(BUS),--bus $(BUS))
