# Two entry points: `make run` (install, then pretrain on the built-in world) and `make test`
# (every test; CI runs it). `make test-fast` leaves out the tests marked slow. Both run one
# pytest-xdist worker per core; a module whose tests share an expensive fixture is one
# xdist_group, so the fixture is built once. `make test PARALLEL=` runs them in one process.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PARALLEL ?= -n auto --dist loadgroup

.PHONY: install browser run test test-fast docs clean

$(BIN)/cacl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(BIN)/cacl

install: $(BIN)/cacl

run: install
	$(BIN)/cacl pretrain --preset tiny-world

# Headless Chromium for the page test of `cacl visualize --html` (Debian's package; the test is
# skipped, saying so, where it cannot be installed).
browser:
	@command -v chromium >/dev/null || timeout 300 apt-get install -y -q chromium >/dev/null 2>&1 \
		|| echo "note: no Chromium (apt-get install chromium failed); the browser test will skip"

test: install browser
	$(BIN)/python -m pytest -q -rs --durations=10 $(PARALLEL)

test-fast: install
	$(BIN)/python -m pytest -q -rs -m "not slow" $(PARALLEL)

# docs/commands.md is every command's help page and every preset key, generated from the app.
docs: install
	$(BIN)/python -c "from cacl_cli.cli import reference_page; print(reference_page(), end='')" \
		> docs/commands.md

clean:
	rm -rf $(VENV) runs build *.egg-info
