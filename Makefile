# The kit's entry points. Each target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test release

setup: $(VENV)/.installed
	@# the sandbox: bubblewrap, plus libseccomp (its filter) and setpriv (util-linux), present on Debian
	@command -v bwrap >/dev/null && ldconfig -p | grep -q libseccomp.so.2 || \
		(apt-get install -y bubblewrap libseccomp2 || (apt-get update && apt-get install -y bubblewrap libseccomp2))

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
