# The kit's entry points. Each target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test check lint release

# The sandbox needs bubblewrap and libseccomp (its filter); as root also setpriv (util-linux).
# Probed without ldconfig (it is in /sbin, not on a normal user's PATH): the loader itself is asked.
setup: $(VENV)/.installed
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	$(PYTHON) -c 'import ctypes; ctypes.CDLL("libseccomp.so.2")' 2>/dev/null || missing="$$missing libseccomp2"; \
	if [ "$$(id -u)" = 0 ] && ! command -v setpriv >/dev/null; then missing="$$missing util-linux"; fi; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y $$missing || (apt-get update && apt-get install -y $$missing); \
	elif [ -n "$$missing" ]; then \
		echo "make setup: the sandbox needs the Debian package(s):$$missing"; \
		echo "  an admin installs them with:  sudo apt-get install$$missing"; \
		exit 1; \
	fi
	@$(PY) -m autograder.sandbox || echo "make setup: grade will refuse to start until these limits hold (see above)"

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

# The fast tier, for every change: lint, then the tests not marked slow (under a minute on 2 cores).
check: lint
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -m "not slow"

# ruff: lint and format check (settings in pyproject.toml).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Regenerate handin/ and notebooks/ from solutions/ and gate the result.
release: setup
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m autograder release
