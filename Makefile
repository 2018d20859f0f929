# The README's two commands. Each one sets up .venv on first use, so that a fresh
# clone needs nothing but Python 3.11+ and make.
#   make test   unit tests + every chapter executed under nbval + the book-level
#               tests (reproducibility, and every page in headless Chromium)
#   make book   the rendered book, every chapter executed, warnings as errors
#   make lab    the chapters in JupyterLab (pinned in requirements-lab.txt)
#   make seeds  benchmarks/seeds.py: every chapter over 20 seeds, failure rates
#               against the stated alpha, in benchmarks/SEEDS.md (not run in CI)
#   make bench  benchmarks/run.py: chapter, build and optimizer-step timings,
#               written to benchmarks/RESULTS.md (BENCH_ARGS=--quick for a small run)

PYTHON ?= python3
# Let Python cache the bytecode of what it imports (see $(STAMP)).
unexport PYTHONDONTWRITEBYTECODE
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
LAB    := $(VENV)/.lab-installed
# The browser test drives an installed Chromium (Playwright is only the driver).
# In CI (CI=true, a Debian machine) `make test` installs Debian's when it is
# missing; elsewhere the test uses any Chromium it finds (Debian's, another
# distribution's, Chrome, or Playwright's own after `playwright install chromium`)
# and is skipped, with one line saying how to enable it, when there is none.
CHROMIUM := /usr/bin/chromium
SUDO     := $(if $(filter 0,$(shell id -u)),,sudo)
NEEDS_BROWSER := $(if $(filter true,$(CI)),$(CHROMIUM),)
BENCH_ARGS ?=
SEEDS_ARGS ?=

.PHONY: test book lab bench seeds clean

# The chapters (every notebook the table of contents lists is in chapters/).
CHAPTERS := $(wildcard chapters/*.ipynb)
# One thread per process: `make book` and `make test` run one process per core.
ONE_THREAD := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

# pip installs without compiling every module to bytecode (torch alone has
# thousands that nothing imports: 45 s of a fresh setup); Python compiles what
# is imported on first import, which is why bytecode writing stays on below.
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-compile -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-compile --no-deps -e .
	touch $(STAMP)

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

# Two pytest sessions: the unit tests and nbval's execution of every chapter (run
# A), one process per core, each on one thread; then the book-level tests, which
# read run A from $(RUN_A), execute every chapter once more (run B: two threads,
# another hash seed and CPU code path, one process per core, beside the book
# build and the browser) and open the book built from run A in Chromium.
# `pytest` alone does all of it in one session, on one core.
RUN_A := _build/run-a

test: $(STAMP) $(NEEDS_BROWSER)
	rm -rf $(RUN_A)
	$(ONE_THREAD) ADAMBOOK_RUN_A=$(CURDIR)/$(RUN_A) $(BIN)/python -m pytest -n auto --dist loadfile -m "not book"
	$(ONE_THREAD) ADAMBOOK_RUN_A=$(CURDIR)/$(RUN_A) $(BIN)/python -m pytest -m book

# `make book` executes every chapter into an empty jupyter-cache, one process per
# core (jcache's local-parallel executor, each kernel on one thread), then builds
# the book from that cache (_config.yml: execute_notebooks: cache), warnings as
# errors. The cache is emptied first, so every build executes every chapter.
BOOK_CACHE := _build/.jupyter_cache

book: $(STAMP)
	rm -rf $(BOOK_CACHE)
	printf "y\n" | $(BIN)/jcache notebook -p $(BOOK_CACHE) add $(CHAPTERS)
	$(ONE_THREAD) $(BIN)/jcache project -p $(BOOK_CACHE) execute -e local-parallel -t 180
	$(BIN)/jupyter-book build . --all -W -n --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

$(LAB): $(STAMP) requirements-lab.txt
	$(BIN)/python -m pip install --quiet -c requirements.txt -r requirements-lab.txt
	touch $(LAB)

lab: $(LAB)
	$(BIN)/jupyter lab chapters/

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

seeds: $(STAMP)
	$(BIN)/python benchmarks/seeds.py $(SEEDS_ARGS)

clean:
	rm -rf _build
