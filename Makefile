# softlabel: `make demo` and `make test` set everything up on a fresh machine (Debian, Rust, Python 3).
# Set-up is idempotent and fast the second time (stamp files).

PYTHON    ?= python3
VENV      := .venv
VPY       := $(VENV)/bin/python
ORT_VER   := 1.32.0
STAMP     := $(VENV)/.stamp-$(ORT_VER)
ORT_LIB   := .ort/libonnxruntime.so
BIN       := target/release/softlabel
CARGO     ?= cargo

.PHONY: setup build demo test test-rust test-python lint bench clean

setup: $(STAMP) $(ORT_LIB)

# Python packages: the onnxruntime wheel (which carries libonnxruntime.so) plus what the tests use.
$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install --quiet --upgrade pip
	$(VPY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The ONNX Runtime shared library, linked from the wheel (it ships only a versioned name).
$(ORT_LIB): $(STAMP)
	mkdir -p .ort
	ln -sf "$$($(VPY) -c 'import onnxruntime, os, glob; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*")))[-1])')" $@
	test -e $@

build: setup
	$(CARGO) build --release --locked

demo: build
	$(BIN) run --root . pipelines/mnist.toml

# Test fixtures (small ONNX models made with the onnx package) are generated into target/fixtures.
test: build
	$(VPY) tests/fixtures/make_models.py target/fixtures
	SOFTLABEL_FIXTURES=$(CURDIR)/target/fixtures SOFTLABEL_PYTHON=$(CURDIR)/$(VPY) $(CARGO) test --release --locked
	SOFTLABEL_FIXTURES=$(CURDIR)/target/fixtures SOFTLABEL_BIN=$(CURDIR)/$(BIN) $(VPY) -m pytest -q tests/python

# Benchmarks (BENCHMARKS.md): set TORCH_PYTHON to a Python with torch to skip installing it in .venv-bench.
bench: build
	$(VPY) scripts/bench

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --locked -- -D warnings

clean:
	rm -rf target out .ort $(VENV)
