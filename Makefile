# Quick start: `make run` (set up, convert the bundled sample to ONNX and Caffe,
# verify) and `make test` (set up, run the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= out
PYTEST_ARGS ?=

.PHONY: install browser lint run test test-fast benchmarks coverage lab readme-tables proto clean

install: $(STAMP)

# torch first, pinned to the CPU build on disk; any later range it satisfies installs nothing more.
JUPYTER_CONFIG := jupyter-config/jupyter_server_config.d/workbench_jupyter.json jupyter-config/lab_overrides.d/workbench.json

$(STAMP): pyproject.toml $(JUPYTER_CONFIG)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	# onnx2torch is only the speed reference of benchmarks/; its declared torchvision
	# requirement would replace the CPU torch, so it is installed without dependencies.
	$(BIN)/python -m pip install -q --no-deps onnx2torch==1.5.15
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	# an editable install skips pyproject's data-files: put the Jupyter configuration in place
	install -D -m 644 jupyter-config/jupyter_server_config.d/workbench_jupyter.json \
		$(VENV)/etc/jupyter/jupyter_server_config.d/workbench_jupyter.json
	install -D -m 644 jupyter-config/lab_overrides.d/workbench.json \
		$(VENV)/share/jupyter/lab/settings/overrides.d/workbench.json
	touch $(STAMP)

# The browser test drives Debian's Chromium with Playwright (which cannot download its own
# browsers here) and reaches Jupyter through a forwarded port (socat, ip netns). Installed once,
# as root, as CI runs; elsewhere the command to run is printed.
BROWSER_PACKAGES := chromium chromium-driver socat iproute2 fonts-dejavu-core
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null && command -v socat >/dev/null \
		&& command -v ip >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(BROWSER_PACKAGES) >/dev/null; \
	else \
		echo "the browser test needs Debian packages: sudo apt-get install $(BROWSER_PACKAGES)" >&2; exit 1; \
	fi

run: $(STAMP)
	$(BIN)/workbench convert workbench.samples:sample_net --to onnx -o $(OUT)/onnx --report $(OUT)/onnx/report.json
	$(BIN)/workbench convert workbench.samples:sample_net --to caffe -o $(OUT)/caffe --fold-bn --report $(OUT)/caffe/report.json

# The browser test runs alone after the rest: JupyterLab, its kernels and Chromium get the
# 2 cores to themselves, as on a user's machine, and its timings mean something.
test: $(STAMP) browser lint
	$(BIN)/python -m pytest -n 2 -q -m "not browser" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -q -m browser $(PYTEST_ARGS)

# Lint, format and types of the package (configured in pyproject.toml; part of `make test`).
lint: $(STAMP)
	$(BIN)/ruff check workbench workbench_jupyter tests benchmarks data
	$(BIN)/ruff format --check workbench workbench_jupyter tests benchmarks data
	$(BIN)/mypy

# Local iteration: skip whole-model and notebook tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

# The speed and memory benchmarks (each prints its ratios; big_models and
# compare_per_layer also write their sections of benchmarks/RESULTS.md). The ONNX
# coverage harness is a measurement of its own: `make coverage`.
BENCHMARKS := read_caffemodel write_caffemodel generated_vs_onnx2torch compare_per_layer fold_bn_caffe big_models

benchmarks: $(STAMP)
	for script in $(BENCHMARKS); do $(BIN)/python benchmarks/$$script.py || exit 1; done

# ONNX's backend test suite (vision node cases, light model zoo) through convert --to
# pytorch and --to caffe: writes benchmarks/COVERAGE.md and benchmarks/coverage.json.
# A measurement (about 3 minutes), not part of `make test`.
coverage: $(STAMP)
	$(BIN)/python benchmarks/onnx_backend_coverage.py

lab: $(STAMP)
	$(BIN)/workbench lab

readme-tables: $(STAMP)
	$(BIN)/python -m workbench.docs README.md

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache

# Regenerate the Caffe schema bindings after editing workbench/formats/caffe.proto.
proto: $(STAMP)
	cd workbench/formats && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. caffe.proto
