# Everything runs from a local virtual environment that the first target creates.
VENV  ?= .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

ALIGN := $(VENV)/.align-stamp

.PHONY: install install-align demo test test-slurm lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@# fail here, not in a test, if torch and torchvision's compiled ops do not match
	$(PY) -c "import torch, torchvision, timm, cv2; torchvision.ops.nms(torch.zeros(1, 4), torch.ones(1), 0.5); cv2.data.haarcascades"
	touch $(STAMP)

install: $(STAMP)

# the optional extra for `--detector dlib` (a 100 MB sdist of landmark models; CI installs it)
$(ALIGN): $(STAMP)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,align]"
	$(PY) -c "import dlib; from kdbench.datasets.detectors import DlibDetector; DlibDetector()"
	touch $(ALIGN)

install-align: $(ALIGN)

demo: $(STAMP)
	$(VENV)/bin/kdbench demo

test: $(STAMP)
	$(PY) -m pytest -q

# Sweeps on a real Slurm: start the test cluster first (sudo slurm/start.sh); prints the timings.
test-slurm: $(STAMP)
	$(PY) -m pytest -q -rA tests/test_slurm.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m pytest tests/benchmarks --benchmark-only -q
	$(VENV)/bin/kdbench bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .benchmarks
