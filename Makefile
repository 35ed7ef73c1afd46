# The kit's entry points. Each target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test release

setup: $(VENV)/.installed
	@command -v bwrap >/dev/null || (apt-get install -y bubblewrap || (apt-get update && apt-get install -y bubblewrap))

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

# The main job, offline: regenerate the release, grade examples/, print the table.
demo: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m autograder demo

# Every test: unit tests, real nbgrader runs, real kernels, the sandbox.
test: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest

# Regenerate handin/ and notebooks/ from solutions/ and gate the result.
release: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m autograder release
