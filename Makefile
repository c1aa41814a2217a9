# emofusion: one entry point for setting up, testing, benchmarking and running.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
INPUT  ?=
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: setup test test-fast bench analyze demo clean

# A virtualenv with the CPU build of torch 2.13.0 (installed first, so no requirement can pull
# another torch build) and emofusion with its dev extras. Never torchvision or torchaudio.
setup: $(STAMP)
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=python3.11 or another >= 3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	@! $(BIN)/pip list 2>/dev/null | grep -Ei '^(torchvision|torchaudio) ' || { echo "error: torchvision/torchaudio must not be installed"; exit 1; }
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/run.py

# Analyse INPUT (a video or audio file); with no INPUT, a generated demo clip.
analyze: setup
	@if [ -z "$(INPUT)" ]; then $(BIN)/python -m emofusion.media.synth demo out/demo.mp4 && \
	  $(BIN)/emofusion analyze out/demo.mp4 --plot out/demo-timeline.png; \
	else $(BIN)/emofusion analyze "$(INPUT)"; fi

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
