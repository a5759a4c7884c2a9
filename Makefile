# softmix: the two commands of the README, and a few more.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test test-min test-slow bench lint docs clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m softmix demo

# Two pytest workers on two cores: one BLAS thread each (oversubscribed OpenBLAS ran the
# small dense products of the tests 10-100x slower; see src/softmix/core/threads.py).
test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 -q

# The declared floors, tested: a separate venv (.venv-min) on Python 3.10 (the oldest
# requires-python; PYTHON_MIN=... to choose another, else python3.10 or pyenv's 3.10, else
# $(PYTHON) with a notice) with every dependency pinned to its floor in pyproject.toml (the
# ">=" of [project] and the extras, turned into "==" in .venv-min/constraints.txt), then the
# fast tests. Wheels only (--only-binary): building NumPy/SciPy 2023 sources on 2 cores takes
# longer than CI has. When those wheels cannot be installed on this Python (none published
# for it, or no registry), the install step fails with pip's reason; MIN_STRICT=0 (what
# .ci/run uses) turns only that case into a loud "SKIPPED" and exit 0, so CI on a Python
# without old wheels is not failed spuriously; a failing test always fails.
VENV_MIN   := .venv-min
PY_MIN     := $(VENV_MIN)/bin/python
MIN_STRICT ?= 1
STAMP_MIN  := $(VENV_MIN)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

$(STAMP_MIN): pyproject.toml
	@set -e; \
	py="$(PYTHON_MIN)"; \
	if [ -z "$$py" ]; then \
	  for c in python3.10 $$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10 2>/dev/null); do \
	    if $$c -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then py=$$c; break; fi; \
	  done; \
	fi; \
	if [ -z "$$py" ]; then \
	  py=$(PYTHON); echo "test-min: no Python 3.10 found; using $$($$py --version) instead"; \
	fi; \
	rm -rf $(VENV_MIN); $$py -m venv $(VENV_MIN); \
	grep -v '^requires' pyproject.toml | grep -o '"[A-Za-z0-9_.-]*\(\[[a-z,]*\]\)\?>=[0-9][0-9.]*' \
	  | tr -d '"' | sed -e 's/\[[a-z,]*\]//' -e 's/>=/==/' > $(VENV_MIN)/constraints.txt; \
	echo "test-min: $$($(PY_MIN) --version) with" $$(cat $(VENV_MIN)/constraints.txt); \
	if ! $(PY_MIN) -m pip install --quiet --disable-pip-version-check --only-binary :all: \
	     --constraint $(VENV_MIN)/constraints.txt -e ".[test]"; then \
	  if [ "$(MIN_STRICT)" = 0 ]; then \
	    echo "test-min: SKIPPED: the minimum versions could not be installed on this Python (pip's reason above)"; \
	    touch $(VENV_MIN)/.skip; \
	  else exit 1; fi; \
	fi; \
	touch $(STAMP_MIN)

test-min: $(STAMP_MIN)
	@if [ -e $(VENV_MIN)/.skip ]; then rm -rf $(VENV_MIN); echo "test-min: SKIPPED (install failed, see above)"; exit 0; fi; \
	$(PY_MIN) -m pip list --disable-pip-version-check 2>/dev/null | grep -iE '^(numpy|scipy|matplotlib|cvxpy|scikit-learn|pytest|hypothesis) ' | tr -s ' ' | tr '\n' ';'; echo; \
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY_MIN) -m pytest -n 2 -q -p no:cacheprovider

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks examples
	$(PY) -m mypy

# The documentation site (docs/, mkdocs.yml) with the API reference from the docstrings, into
# build/site/; --strict turns every warning (a broken link, a missing page) into a failure.
DOCS_STAMP := $(VENV)/.docs-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
$(DOCS_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e ".[docs]"
	rm -f $(VENV)/.docs-*
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	$(PY) -m mkdocs build --strict

clean:
	rm -rf $(VENV) $(VENV_MIN) build dist src/*.egg-info .pytest_cache .mypy_cache
