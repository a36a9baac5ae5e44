# The few things a person runs. `make help` lists them.
# Everything runs inside .venv, created on first use from requirements*.txt.

PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       ?= .venv
PY         := $(VENV)/bin/python
BRAINMRI   := $(VENV)/bin/brainmri
PROFILE    ?= quick
DATASET    ?=
RUN        ?= $(PROFILE)
ONLY       ?=
PYTEST_ARGS ?=
LAB_ARGS   ?=
STAMP      := $(VENV)/.installed

export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# pip reads this; without it, unrelated index warnings flood the log on some machines.
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help env data run book html lab report test lint params-cells study study-carry bench bench-predict browser-deps serve publish clean-cache

help:
	@echo "make report   environment + data + the $(PROFILE) series + the book (PROFILE=quick|full|reference)"
	@echo "make test     environment + lint + the test suite (what CI runs)"
	@echo "make lint     ruff on lib/ and tests/"
	@echo "make study    08c's reference study models for BUDGET minutes (default 80), kept as rows in results/study-rows/"
	@echo "make study-carry SAMPLE=a,b  re-key the study rows to the current code once it reproduced rows a and b"
	@echo "make params-cells  rewrite each notebook's parameters cell from params/base.yaml"
	@echo "make run      run the notebook series only (PROFILE, DATASET, ONLY=01,02)"
	@echo "make book     build the book from results/\$$RUN (RUN defaults to PROFILE)"
	@echo "make html     one standalone HTML page per notebook of results/\$$RUN, in its html/"
	@echo "make lab      JupyterLab on notebooks/ with the project's kernel (LAB_ARGS=--no-browser ...)"
	@echo "make bench    input-pipeline benchmark (cached data vs synthetic tensors)"
	@echo "make bench-predict  brainmri predict images/s, start-up included (BENCH_ARGS=FOLDER ...)"
	@echo "make serve    serve _build/html on http://localhost:8000"
	@echo "make publish  push _build/html to the gh-pages branch (ghp-import)"

env: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 not found (set PYTHON=/path/to/python3.11)"; exit 1; }
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (brainmri)" >/dev/null
	@touch $@

data: env
	$(BRAINMRI) data fetch --dataset $(or $(DATASET),all)

run: env
	@$(BRAINMRI) run --profile $(PROFILE) --run $(RUN) $(if $(DATASET),--dataset $(DATASET)) $(if $(ONLY),--only $(ONLY))

book: env
	@$(BRAINMRI) book --run $(RUN)

html: env
	$(BRAINMRI) html --run $(RUN)

# Rooted at the project (params/, lib/ and results/ stay reachable), opening notebooks/;
# new notebooks get the kernel `make env` installed. Containers often run as root.
lab: env
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/notebooks \
	  --MappingKernelManager.default_kernel_name=python3 $(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

# Quiet: one line per dataset and per step, the book's location and real errors; the
# rest goes to results/$(RUN)/logs/ and _build/book.log.
report: env
	@$(BRAINMRI) data fetch --dataset $(or $(DATASET),all)
	@$(MAKE) --no-print-directory run book

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

lint: env
	$(VENV)/bin/ruff check lib tests
	$(VENV)/bin/ruff format --check notebooks

# Chapter 08c's ablation and lever models for the reference profile, trained for at most
# BUDGET minutes as rows in results/study-rows/ (committed; no weights) that
# `make report PROFILE=reference` restores: run again to go on where it stopped.
BUDGET ?= 80
study: env
	$(BRAINMRI) run --profile reference --run study --only 01_,01b,01c,08c --set study_minutes=$(BUDGET)

# After an edit of the science code that leaves the study's models as they were: retrain
# SAMPLE (comma-separated rows of results/study-rows/, one per code path the edit
# touches) and, if each comes out byte for byte the same, re-key every row to the code.
study-carry: env
	$(BRAINMRI) carry --sample $(SAMPLE)

# Each notebook's parameters cell declares its chapter's parameters with base.yaml's
# defaults (papermill's convention); this writes them after base.yaml changes.
params-cells: env
	$(PY) -m brainmri.report.series.cells

bench: env
	$(BRAINMRI) throughput

# `brainmri predict` images/s on Nickparvar's Testing folder ($BRAIN_MRI_DATA), start-up
# included; BENCH_ARGS="FOLDER --repeat 5 --workers 2" to change it.
bench-predict: env
	$(PY) benchmarks/predict_throughput.py $(BENCH_ARGS)

# Headless Chromium + chromedriver for the browser test (Debian packages; needs root or sudo).
browser-deps:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then \
	  echo "chromium and chromedriver present"; \
	else \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	fi

serve:
	$(PY) -m http.server --directory _build/html 8000

publish:
	$(VENV)/bin/ghp-import --no-jekyll --push --force _build/html

clean-cache:
	rm -rf data/cache
