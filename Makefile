# karpa-lab: `make lab` to learn, `make test` to check everything. Both set up .venv first when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Each audience gets what it needs: learners (`make lab`) the lessons' tools, `make test` also the test tools.
# Versions come from constraints.txt (`make lock` refreshes it), so a clone next year installs what was tested.
LEARNER_EXTRAS := lab,grading,nas
TEST_EXTRAS := lab,test,grading,nas,browser,site,classroom
# The install is redone only when pyproject.toml or constraints.txt (or this recipe's version) changes.
HASH := $(shell cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)
LAB_STAMP := $(VENV)/.installed-lab-$(HASH)-v2
TEST_STAMP := $(VENV)/.installed-test-$(HASH)-v2
# PyPI's torch for Linux is the CUDA build (gigabytes); a CPU-only laptop can take PyTorch's CPU wheels with
#   make lab TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)
# Later lessons first: they train the most, and two workers handed the long ones first finish together
# (the short labs fill in at the end).
NOTEBOOKS := $(shell ls -r lessons/[0-9]*.ipynb) $(sort $(wildcard lessons/solutions/[0-9]*.ipynb labs/[0-9]*/[0-9]*.ipynb))
PAIRS := $(sort $(wildcard lessons/[0-9]*.py lessons/solutions/[0-9]*.py labs/*/[0-9]*.py))

.PHONY: setup lab teach lock handout test unit notebooks classroom lint sync execute bench release autograde screenshots site help

help:
	@echo "make lab      set up (first time) and open JupyterLab on the course"
	@echo "make teach    JupyterLab with nbgrader's teacher tools (Formgrader, Create Assignment)"
	@echo "make lock     refresh constraints.txt from the installed versions"
	@echo "make handout DEST=dir   a copy of the course without the worked solutions"
	@echo "make test     set up (first time) and run every test, notebooks included"
	@echo "make classroom  the JupyterHub class round trip alone (as root: it creates system users)"
	@echo "make sync     jupytext --sync every paired notebook (after editing a .py)"
	@echo "make execute  re-run every lesson and lab notebook in place so the .ipynb carry fresh outputs"
	@echo "make bench    fit()'s overhead against a hand-written loop; the mini-GPT's throughput and MFU"
	@echo "make release  generate the student versions of every lab into release/ (nbgrader)"
	@echo "make autograde SUBMISSIONS=dir   grade submissions (dir/<student>/<lab>/<lab>.ipynb) into grading/grades.csv"
	@echo "make screenshots  PNGs of the widgets after a slider move, into docs/img/ (needs chromium)"
	@echo "make site    the course as a static website, from the committed notebooks, into build/site/"

setup: $(TEST_STAMP)

# $(call install,EXTRAS): the venv, pip, torch (pinned, first), then the course package with EXTRAS.
define install
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# The pip that venv bundles (23.2 here) took 170 s over the installs below, pip 26 111 s (both compiling).
	$(PY) -m pip install --quiet --upgrade pip
	@# torch first and pinned, so pip takes the CPU wheel where one is at hand and never a build pulled in by a range.
	$(PY) -m pip install --quiet --no-compile -c constraints.txt $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0
	@# pip byte-compiles on one core; compileall uses them all, and compiles torch while pip installs the rest
	@# (pip leaves torch's folder alone then): set-up took 101 s, now 69 s. Its status is ignored, as pip's is:
	@# a few files are for newer Pythons (torch's py312_intrinsics.py) and do not compile.
	site="$$($(PY) -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"; \
		{ $(PY) -m compileall -qq -j 0 "$$site/torch" || true; } & \
		$(PY) -m pip install --quiet --no-compile -c constraints.txt -e ".[$(1)]" && wait && \
		{ $(PY) -m compileall -qq -j 0 -x "^$$site/torch/" "$$site" || true; }
	@find $(VENV) -maxdepth 1 -name '.installed-*' ! -name '*-$(HASH)-*' -delete
endef

$(LAB_STAMP): pyproject.toml constraints.txt
	$(call install,$(LEARNER_EXTRAS))
	@touch $@
	@echo "karpa-lab environment ready in $(VENV)"

$(TEST_STAMP): pyproject.toml constraints.txt
	$(call install,$(TEST_EXTRAS))
	@touch $@ $(LAB_STAMP)
	@echo "karpa-lab environment (with the test tools) ready in $(VENV)"

# Learners: each lesson once in the file browser, no news pop-up, nbgrader's student side (jupyter/README.md).
lab: $(LAB_STAMP)
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter/learner:$(CURDIR)/jupyter/common" $(VENV)/bin/jupyter lab \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/lessons \
		--ip=$${KARPA_LAB_IP:-127.0.0.1} $(ROOT_FLAG) $(JUPYTER_ARGS)

# Teachers: the same, with nbgrader's Formgrader, Create Assignment and course tools, and the .py twins shown.
teach: $(LAB_STAMP)
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter/common" $(VENV)/bin/jupyter lab \
		--ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/labs \
		--ip=$${KARPA_LAB_IP:-127.0.0.1} $(ROOT_FLAG) $(JUPYTER_ARGS)

# Pin every installed package at the version it has now (torch without its local +cpu label).
lock: setup
	{ echo "# Versions make test last passed with (Python $$($(PY) -c 'import platform; print(platform.python_version())')); refresh with make lock."; \
	  $(PY) -m pip freeze --exclude-editable | sed -E 's/\+[A-Za-z0-9.]+$$//' | LC_ALL=C sort -f; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

lint: setup
	$(VENV)/bin/ruff check karpa_lab tests benchmarks lessons labs tools classroom

# The static site: lessons (stored outputs, nothing re-run), a page per lab, glossary, "run it yourself";
# MathJax and the widget manager served from the site itself (npm ci of site/package-lock.json into build/).
site: setup
	OMP_NUM_THREADS=1 $(PY) tools/build_site.py --out build/site

# Unit tests, the notebook pairs, the lab pipeline (nbgrader), the widgets and the site in headless Chromium
# (tests/browser: skipped with the reason when chromium is missing, an error with KARPA_REQUIRE_BROWSER=1).
# One thread per process: two workers each running torch on two threads of a 2-core machine run at half speed.
# The site's browser tests share one visit of every page: loadgroup keeps them on one worker; they use the
# build that the site target just made (KARPA_SITE_BUILT) instead of building again.
unit: setup site
	OMP_NUM_THREADS=1 MPLBACKEND=Agg KARPA_SITE_BUILT=1 $(VENV)/bin/pytest -q -n 2 --dist loadgroup -m "not hub" tests

# A class on a real JupyterHub (classroom/): an instructor and two students created as system users, nbgrader's
# exchange, the sandboxed grader, Chromium for one student. Needs root; skipped with the reason elsewhere, an
# error with KARPA_REQUIRE_HUB=1 (CI). Alone, after the other tests: it starts three JupyterLab servers.
classroom: setup
	OMP_NUM_THREADS=1 $(VENV)/bin/pytest -q -s -m hub tests/browser/test_classroom_hub.py

# One notebook per worker, two workers; each kernel gets one thread so two lessons share the two cores.
notebooks: setup
	OMP_NUM_THREADS=1 KARPA_HEADLESS=1 MPLBACKEND=Agg $(VENV)/bin/pytest -q -p karpa_lab.testing.notebook_times \
		--nbval-lax --nbval-current-env -n 2 --dist loadfile --timeout 600 $(NOTEBOOKS)

test: setup lint unit notebooks classroom

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

# The course without lessons/solutions/ (and without the links to it), for exercises set as homework.
handout:
	@test -n "$(DEST)" || { echo "make handout DEST=path/to/new/folder"; exit 2; }
	$(PYTHON) tools/handout.py "$(DEST)"

screenshots: setup
	$(PY) tools/screenshots.py
