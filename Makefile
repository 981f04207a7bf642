# One command per chore, the same locally and in CI.
#   make test   fresh .venv, everything installed, the whole CPU test suite
#   make demo   the same set-up, then the default sweep and its summary
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Without a GPU, the CPU build of torch (a local wheel on our machines); a GPU machine keeps pip's default.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test test-gpu lint demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q "$(TORCH_CPU)"; fi
	$(BIN)/pip install -q -e '.[all,finetune,dev]'
	touch $(STAMP)

# Headless Chromium for the one real-browser test (Debian's package); skipped if it cannot install.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v /usr/bin/chromium >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	    || echo "chromium could not be installed: the browser test will be skipped"; }

test: $(STAMP) chromium
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/python -m pytest -q -ra

test-gpu: $(STAMP)
	$(BIN)/python -m pytest -q -ra -m gpu

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/lint-imports

# The default sweep (smoke on a CPU, seed on a GPU machine) into results.db, its summary, then
# the web app over it on http://127.0.0.1:7860 (Ctrl-C to stop).
demo: $(STAMP)
	$(BIN)/python -m sweep --db results.db
	GRADIO_ANALYTICS_ENABLED=False $(BIN)/python -m ui --db results.db

clean:
	rm -rf $(VENV) .pytest_cache results.db*
