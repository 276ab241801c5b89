# karpa-lab: `make lab` to learn, `make test` to check everything. Both set up .venv first when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The install is redone only when pyproject.toml (or this recipe's version) changes.
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-16)-v1
EXTRAS := lab,test,grading,nas,browser
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# Later lessons first: they train the most, and two workers handed the long ones first finish together
# (the short labs fill in at the end).
NOTEBOOKS := $(shell ls -r lessons/[0-9]*.ipynb) $(sort $(wildcard labs/[0-9]*/[0-9]*.ipynb))
PAIRS := $(sort $(wildcard lessons/[0-9]*.py labs/*/[0-9]*.py))

.PHONY: setup lab test unit notebooks lint sync execute bench release autograde screenshots help

help:
	@echo "make lab      set up (first time) and open JupyterLab on the course"
	@echo "make test     set up (first time) and run every test, notebooks included"
	@echo "make sync     jupytext --sync every paired notebook (after editing a .py)"
	@echo "make execute  re-run every lesson and lab notebook in place so the .ipynb carry fresh outputs"
	@echo "make bench    fit()'s overhead against a hand-written loop; the mini-GPT's throughput and MFU"
	@echo "make release  generate the student versions of every lab into release/ (nbgrader)"
	@echo "make autograde SUBMISSIONS=dir   grade submissions (dir/<student>/<lab>/<lab>.ipynb) into grading/grades.csv"
	@echo "make screenshots  PNGs of the widgets after a slider move, into docs/img/ (needs chromium)"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The pip that venv bundles (23.2 here) took 170 s over the installs below, pip 26 111 s (both compiling).
	$(PY) -m pip install --quiet --upgrade pip
	@# torch first and pinned, so pip takes the CPU wheel and never a CUDA build pulled in by a range.
	$(PY) -m pip install --quiet --no-compile torch==2.13.0
	@# pip byte-compiles on one core; compileall uses them all, and compiles torch while pip installs the rest
	@# (pip leaves torch's folder alone then): set-up took 101 s, now 69 s. Its status is ignored, as pip's is:
	@# a few files are for newer Pythons (torch's py312_intrinsics.py) and do not compile.
	site="$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
		{ $(PY) -m compileall -qq -j 0 "$$site/torch" || true; } & \
		$(PY) -m pip install --quiet --no-compile -e ".[$(EXTRAS)]" && wait && \
		{ $(PY) -m compileall -qq -j 0 -x "^$$site/torch/" "$$site" || true; }
	@rm -f $(VENV)/.installed-*
	@touch $@
	@echo "karpa-lab environment ready in $(VENV)"

lab: setup
	$(VENV)/bin/jupyter lab --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/lessons \
		--ip=$${KARPA_LAB_IP:-127.0.0.1} $(ROOT_FLAG) $(JUPYTER_ARGS)

lint: setup
	$(VENV)/bin/ruff check karpa_lab tests benchmarks lessons labs tools

# Unit tests, the notebook pairs, the lab pipeline (nbgrader) and the widgets in headless Chromium
# (tests/browser: skipped with the reason when chromium is missing, an error with KARPA_REQUIRE_BROWSER=1).
# One thread per process: two workers each running torch on two threads of a 2-core machine run at half speed.
unit: setup
	OMP_NUM_THREADS=1 MPLBACKEND=Agg $(VENV)/bin/pytest -q -n 2 tests

# One notebook per worker, two workers; each kernel gets one thread so two lessons share the two cores.
notebooks: setup
	OMP_NUM_THREADS=1 KARPA_HEADLESS=1 MPLBACKEND=Agg $(VENV)/bin/pytest -q -p karpa_lab.testing.notebook_times \
		--nbval-lax --nbval-current-env -n 2 --dist loadfile --timeout 600 $(NOTEBOOKS)

test: setup lint unit notebooks

sync: setup
	$(VENV)/bin/jupytext --sync $(PAIRS)

execute: setup
	@# Two notebooks at a time, one thread each (as under make test); xargs fails if any notebook fails.
	printf '%s\n' $(NOTEBOOKS) | OMP_NUM_THREADS=1 KARPA_HEADLESS=1 xargs -P 2 -I{} $(VENV)/bin/jupyter nbconvert \
		--to notebook --execute --inplace --ExecutePreprocessor.timeout=600 {}
	$(VENV)/bin/jupytext --sync $(PAIRS)

bench: setup
	$(PY) benchmarks/fit_overhead.py
	$(PY) benchmarks/gpt_throughput.py

release: setup
	$(PY) -m karpa_lab.autograde release --out release

SUBMISSIONS ?= submitted
COURSE ?= grading
autograde: setup
	@test -d "$(SUBMISSIONS)" || { echo "make autograde: no folder '$(SUBMISSIONS)'. Put each student's notebook at"; \
		echo "  $(SUBMISSIONS)/<student>/<lab>/<lab>.ipynb  (or: make autograde SUBMISSIONS=path/to/submitted)"; exit 2; }
	$(PY) -m karpa_lab.autograde autograde "$(SUBMISSIONS)" --course "$(COURSE)" $(if $(TIMEOUT),--timeout $(TIMEOUT)) $(if $(NO_SANDBOX),--no-sandbox)

screenshots: setup
	$(PY) tools/screenshots.py
