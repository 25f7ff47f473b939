# Two commands: `make demo` (whole DAG on the offline demo config) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
STAMP := $(VENV)/.installed

.PHONY: demo demo-methods test install lint dag clean check-newest-torch

$(STAMP): pyproject.toml requirements/lock.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c requirements/lock.txt -e ".[test,cluster]"
	# pyctcdecode's metadata pins numpy<2 although it runs on numpy 2 (upstream #118/#119): its deps are ours.
	$(BIN)/python -m pip install --quiet --no-deps -c requirements/lock.txt pyctcdecode
	sh envs/build_kenlm.sh $(BIN)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --profile profiles/default
	$(BIN)/snakemake --cores $(CORES) --profile profiles/default --report results/report.html
	@echo "Results: results/tables/wer.csv, figures in results/figures/, report in results/report.html"

# Every compression method on the demo model (reuses the demo's fine-tuned baseline when it exists).
demo-methods: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --profile profiles/default --configfile config/demo_methods.yaml
	@echo "Results: results/tables/methods/wer.csv, figures in results/figures/methods/, cards in results/variants/"

test: $(STAMP)
	$(BIN)/python -m pytest tests

# The quantization, export and cost tests on the newest torch the package index serves (not the lock's), in a venv
# of its own: torchaudio has no wheel for it, and those tests do not need one.
NEWEST_TORCH ?= 2.14.1
check-newest-torch:
	test -x .venv-newest/bin/python || $(PYTHON) -m venv .venv-newest
	.venv-newest/bin/python -m pip install --quiet "torch==$(NEWEST_TORCH)" torchao "transformers>=4.45,<6" onnx onnxscript \
		onnxruntime pytest pyyaml soundfile numpy jsonschema pandas scipy jiwer hypothesis audiomentations kenlm pygtrie
	PYTHONPATH=src .venv-newest/bin/python -m pytest tests/test_quantization.py tests/test_deploy.py tests/test_cost.py

lint: $(STAMP)
	$(BIN)/snakemake --lint

dag: $(STAMP)
	$(BIN)/snakemake --rulegraph mermaid-js > docs/rulegraph.mmd

clean:
	rm -rf results logs .snakemake
	# Job records of runs from before they moved under results/benchmarks/.
	rm -rf $(filter-out benchmarks/results/,$(wildcard benchmarks/*/))
