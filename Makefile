# The two commands of the quick start: `make run` and `make test`. Each builds .venv when it is
# missing or when pyproject.toml changed, so a fresh machine needs nothing else.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# No NVIDIA GPU: pin the CPU build of torch. A workstation keeps its CUDA build.
CONSTRAINTS := $(shell command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 || echo "-c constraints-cpu.txt")

export QT_API := pyside6

.PHONY: gpu-deps run test lint typecheck check bench clean screenshot bundle bundle-test

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e '.[gui,test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vramdeck $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -rs $(PYTEST_ARGS)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python bench/load_overhead.py

screenshot: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/vramdeck --screenshot resources/screenshot.png

# The panel's latency: launch to window, chart CPU, loop stalls during real loads (~1.5 min).
bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(BIN)/python bench/gui_latency.py

# A one-folder bundle of the app in dist/vramdeck/ (949 MB: torch comes along; 3 to 9 minutes).
# Not part of `make test`: `make bundle-test` builds it and runs its smoke tests (.ci/run does).
bundle: $(STAMP)
	$(BIN)/python -m pip install --quiet $(CONSTRAINTS) -e '.[gui,test,bundle]'
	$(BIN)/pyinstaller --noconfirm --clean --distpath dist --workpath build/pyinstaller \
		packaging/vramdeck.spec
	du -sh dist/vramdeck

# The bundle's smoke tests fail, rather than skip, when there is no bundle.
bundle-test: bundle
	VRAMDECK_REQUIRE_BUNDLE=1 QT_QPA_PLATFORM=offscreen HF_HUB_OFFLINE=1 $(BIN)/python -m pytest \
		-q -rs tests/cli/test_bundle.py tests/cli/test_packaging.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache

# The pure-Python packages the lent GPU machine lacks (it has no network), for bench/gpu_check.sh.
gpu-deps: $(STAMP)
	rm -rf build/gpu_deps && mkdir -p build/gpu_deps
	cd $(VENV)/lib/python3*/site-packages && cp -r pytest_asyncio* platformdirs* opentelemetry* \
		$(CURDIR)/build/gpu_deps/
