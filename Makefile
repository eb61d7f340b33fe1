# The README's two commands. Everything installs into .venv from the package registries;
# torch is pinned to the CPU build these machines provide (see pyproject.toml).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test install chromium postgresql clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,bench,batch]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/landsentry serve --host $(HOST) --port $(PORT)

# The browser test drives Debian's chromium through Playwright's driver (never `playwright install`).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium; \
	fi

# The store's and the replicas' tests start a throwaway PostgreSQL 15 (tests/postgres.py): Debian's server package.
postgresql:
	@if [ ! -x /usr/lib/postgresql/15/bin/initdb ] && ! command -v initdb >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq postgresql; \
	fi

test: $(STAMP) chromium postgresql
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) out .pytest_cache
