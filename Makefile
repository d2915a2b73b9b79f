# Two commands: `make test` and `make demo`. Both create .venv if missing and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.fashion-installed

.PHONY: test demo install lint serve-env browser web clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e ".[train,export,bench,demo,dev,jax,fast]"
	touch $(STAMP)

install: $(STAMP)

# fashion-serve's own environment: nvidia-pytriton (Triton 2.51 + its Python backend) needs numpy<2, the main
# environment keeps numpy 2, so the serve tests start servers from here and talk to them from .venv.
SERVE_VENV ?= .venv-serve
SERVE_STAMP := $(SERVE_VENV)/.fashion-installed
$(SERVE_STAMP): pyproject.toml
	[ -x $(SERVE_VENV)/bin/python ] || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q -e ".[serve]"
	touch $(SERVE_STAMP)

serve-env: $(SERVE_STAMP)

# Debian's Chromium for the browser test (Playwright's own download cannot work offline). Best effort:
# without root or apt the browser test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	  echo "chromium not installed: the browser test will skip"; }

# npm packages of the embedding demos (onnxruntime-web for the page, onnxruntime-node + jpeg-js/pngjs for the Node
# tagger), from the npm registry with the committed lock file; never a CDN at run time. onnxruntime-node's optional
# CUDA download is skipped. Best effort: without npm the web/Node tests skip and say why.
WEB_DIR := fashion/demo/web
WEB_STAMP := $(WEB_DIR)/node_modules/.fashion-installed
web:
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: the web and Node embedding tests will skip"; \
	elif [ ! -f $(WEB_STAMP) ] || [ $(WEB_DIR)/package-lock.json -nt $(WEB_STAMP) ]; then \
	  (cd $(WEB_DIR) && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund --loglevel=error) && \
	  touch $(WEB_STAMP) || echo "npm ci failed: the web and Node embedding tests will skip"; fi

# Habits checked before the tests: lint + format (ruff), types of the typed packages (mypy; files in pyproject),
# and the layer contracts (import-linter: a wrong import fails with the offending chain).
lint: $(STAMP)
	$(PY) -m ruff check fashion tests
	$(PY) -m ruff format --check fashion tests
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

test: $(STAMP) lint serve-env browser web
	$(PY) -m pytest -q

demo: $(STAMP)
	$(VENV)/bin/fashion-demo

clean:
	rm -rf $(VENV) $(SERVE_VENV) build *.egg-info
