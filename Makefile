# The book's commands. Setup is included: each target creates .venv and installs
# the exact pins (requirements.txt), dlkb (editable) and MathJax (npm) when needed.
#   make book    build the website into _build/html
#   make test    run every test (unit, book structure, nbval strict, site build)
#   make run NB=chapters/how-to-use.ipynb   re-execute one notebook and save outputs
#   make run-all re-execute every notebook
#   make timing  execute every notebook, write _build/timing.md
#   make bench   time every from-scratch dlkb op against its library op, write _build/bench.md and .json
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
MATHJAX := _assets/mathjax/tex-chtml.js
export PYTHONHASHSEED := 0

.PHONY: book test chromium run run-all timing bench serve clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -r requirements.txt
	$(BIN)/python -m pip install --disable-pip-version-check -q --no-deps -e .
	touch $@

$(MATHJAX): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	rm -rf _assets/mathjax && mkdir -p _assets/mathjax
	cd node_modules/mathjax/es5 && cp -r tex-chtml.js input output ui a11y sre adaptors ../../../_assets/mathjax/

book: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . --warningiserror --keep-going
	@echo "Website: _build/html/index.html  (preview: $(BIN)/python -m http.server -d _build/html 8000, then open http://localhost:8000)"

test: $(STAMP) $(MATHJAX) chromium
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The browser tests drive Debian's Chromium (no browser download). Installed here
# when missing and we are root; otherwise those tests skip locally (and fail in CI).
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "warning: no Chromium and not root: the browser tests will be skipped"; fi; }

run: $(STAMP)
	@test -n "$(NB)" || { echo "usage: make run NB=chapters/NAME.ipynb"; exit 2; }
	$(BIN)/python tools/nbtool.py run $(NB)

run-all: $(STAMP)
	$(BIN)/python tools/nbtool.py run --all

timing: $(STAMP)
	$(BIN)/python tools/nbtool.py timing --out _build/timing.md

bench: $(STAMP)
	$(BIN)/python tools/bench.py --out _build/bench

serve:
	$(BIN)/python -m http.server -d _build/html 8000

clean:
	rm -rf _build
