# Two commands do all the set-up on a fresh machine with only Python:
#   make train   -> creates .venv on first use, installs rlgen, runs `rlgen train-dqn CartPole-v1`
#   make test    -> the same set-up, then the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, pinned to the CPU build that CI machines keep on disk; pyproject.toml
# itself only asks for torch>=2.2, so users with a GPU keep their own build.
TORCH  ?= torch==2.13.0

.PHONY: install train test bench clean

$(BIN)/rlgen: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $(BIN)/rlgen

install: $(BIN)/rlgen

train: install
	$(BIN)/rlgen train-dqn CartPole-v1

test: install
	$(BIN)/python -m pytest tests

bench: install
	$(BIN)/python scripts/bench_dqn.py

clean:
	rm -rf $(VENV) build *.egg-info
