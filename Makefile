# The two commands of the README: `make run` runs the suite, `make test` runs every test.
# Both install what they need on a fresh machine (venv, pip packages, Debian packages, Maven artifacts).
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test install system-deps opensearch-start opensearch-stop bench clean

# yara-python is built from source: the PyPI wheel's libyara scans about 9% slower than the yara tool it is
# measured against (bench/bench_yara.py); building needs gcc and the OpenSSL headers (system-deps).
$(STAMP): pyproject.toml
	bash scripts/install-system-deps.sh
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	PIP_NO_BINARY=yara-python $(VENV)/bin/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

system-deps:
	bash scripts/install-system-deps.sh

run: install
	$(VENV)/bin/soc serve

test: install system-deps
	bash scripts/run-tests.sh

# Every benchmark under bench/ (bench_*.py); each writes its section of docs/benchmarks.md.
bench: install system-deps
	bash scripts/run-benchmarks.sh

opensearch-start: system-deps
	scripts/opensearch.sh start

opensearch-stop:
	scripts/opensearch.sh stop

clean:
	rm -rf $(VENV) .cache data .pytest_cache
