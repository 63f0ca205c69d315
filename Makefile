# WardFlow: `make demo` runs the demo on the embedded broker, `make test` runs the tests.
# Each creates the virtual environment on first use (pip: torch must come from the pinned CPU wheel).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test model bench schemas clean help
help:
	@echo "make demo    - broker + worker + bed board + a simulated hospital day, live (builds the model on first run)"
	@echo "make test    - ruff, mypy, then the whole test suite (creates .venv when missing)"
	@echo "make model   - corpus -> train -> evaluate -> export -> quantize the default triage model"
	@echo "make bench   - benchmarks in bench/ (JSON on stdout)"
	@echo "make schemas - JSON Schema of every topic into ./schemas"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,dev,demo]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/wardflow demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -ra

model: $(STAMP)
	$(BIN)/wardflow build-model

bench: $(STAMP)
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/allocator.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/hl7.py

schemas: $(STAMP)
	$(BIN)/wardflow schemas --out schemas

clean:
	rm -rf $(VENV) var schemas
