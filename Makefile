# Two entry points: `make run` (install, then pretrain on the built-in world) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install run test clean

$(BIN)/cacl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/cacl

install: $(BIN)/cacl

run: install
	$(BIN)/cacl pretrain --preset tiny-world --out runs/tiny-world-$$(date +%Y%m%d-%H%M%S)

test: install
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
