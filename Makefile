# The two commands of the README. Each creates .venv when missing (or when the pins change), then runs.
VENV   ?= .venv
STAMP  := $(VENV)/.edgecart-setup
PYTEST_ARGS ?=

.PHONY: demo test lint setup clean

$(STAMP): pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgecart demo --out out

test: $(STAMP)
	@$(VENV)/bin/python -m pytest -q --durations=25 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing (a test run that tests nothing proves nothing)"; fi; \
	exit $$rc

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf out .pytest_cache
