# The README's two commands: `make figures` (build everything the course shows) and `make test`.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
PY := .venv/bin/python
DATA := data/synthfaces
# real CelebA: the 4,560 + 9,723 train faces of the two shared folders (never copied into the project)
CELEBA := ../shared/celeba-sample
CELEBA_HALF := ../shared/celeba-halfres
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
# glibc returns freed activation buffers to the OS after every step unless these are raised;
# that made batch-64 CPU training steps over 2x slower (see the README's performance notes).
export MALLOC_MMAP_THRESHOLD_ := 4294967296
export MALLOC_TRIM_THRESHOLD_ := 4294967296

# Copy an executed notebook back without papermill's injected-parameters cell: left in, it would
# make nbval (SMOKE) runs write smoke figures into figures/.
export STRIP_INJECTED := import json, sys; nb = json.load(open(sys.argv[1])); \
  nb["cells"] = [c for c in nb["cells"] if "injected-parameters" not in c["metadata"].get("tags", [])]; \
  json.dump(nb, open(sys.argv[2], "w"), indent=1, ensure_ascii=False)

.PHONY: figures test test-ui lint train-demo train-celeba celeba-stop train-celeba-stage1 celeba-judge demo-judge \
  data bench clean

# (Re)create the environment when it is missing or pyproject.toml is newer than the install.
.venv/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

$(DATA)/list_attr_celeba.txt: .venv/.installed
	$(PY) -m celebadiff synth --out $(DATA) --n 30000 --size 64 --seed 0

data: $(DATA)/list_attr_celeba.txt

figures: .venv/.installed data
	mkdir -p build/notebooks figures
	for nb in $(NOTEBOOKS); do \
	  start=$$(date +%s); \
	  $(PY) -m papermill --cwd notebooks -k python3 -p SAVE_FIGURES True "$$nb" "build/$$nb" --log-level WARNING; \
	  $(PY) -c "$$STRIP_INJECTED" "build/$$nb" "$$nb"; \
	  echo "$$nb: $$(( $$(date +%s) - start )) s"; \
	done

lint: .venv/.installed
	$(PY) -m ruff check celebadiff tests benchmarks

test: .venv/.installed lint
	SMOKE_TEST=1 $(PY) -m pytest tests --ignore=tests/ui --nbval-lax $(NOTEBOOKS) -p no:cacheprovider

# The editor in a real browser: notebook 07 in JupyterLab, driven by headless Chromium (about 1-2 min).
test-ui: .venv/.installed
	command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	$(PY) -m pip install -q -e '.[ui]'
	CELEBADIFF_REQUIRE_UI=1 $(PY) -m pytest tests/ui -p no:cacheprovider

# Reproduce the committed demo models: demo-base from scratch (about 2 h on 2 CPU cores), then demo, its second
# stage with the contrastive term (about 5 min). An interrupted stage is resumed from its last checkpoint.
train-demo: .venv/.installed data
	$(PY) -m celebadiff train --data $(DATA) --preset demo --out runs/demo-base \
	  $$(test -f runs/demo-base/checkpoints/last.safetensors && echo --resume)
	$(PY) -m celebadiff export --checkpoint runs/demo-base --out checkpoints/demo-base.safetensors
	cp runs/demo-base/loss.csv checkpoints/demo-base-loss.csv
	$(PY) -m celebadiff train --data $(DATA) --preset demo-contrastive --init demo-base --out runs/demo \
	  $$(test -f runs/demo/checkpoints/last.safetensors && echo --resume)
	$(PY) -m celebadiff export --checkpoint runs/demo --out checkpoints/demo.safetensors
	cp runs/demo/loss.csv checkpoints/demo-loss.csv

# The real-face training campaign (issue 18), a session at a time: resumes runs/celeba64 when it is there, else
# warm-starts a new run from the committed celeba64. MINUTES=50 ends this session's part with a checkpoint
# (one is written every 250 steps anyway, so the run can also just be killed). PRECISION=auto picks bf16 where
# the CPU has bf16 units. Then `make celeba-stop` scores it and commits the model only if it edits better.
MINUTES ?=
PRECISION ?= auto
train-celeba: .venv/.installed
	$(PY) -m celebadiff train --data $(CELEBA) --data $(CELEBA_HALF) --preset celeba64-campaign --out runs/celeba64 \
	  --precision $(PRECISION) $(if $(MINUTES),--minutes $(MINUTES)) \
	  $$(test -f runs/celeba64/checkpoints/last.safetensors && echo --resume || echo --init celeba64)

# A stopping point of the campaign: export the EMA weights, score them and the committed model on the same
# 64 valid faces, log a row in the model card, replace checkpoints/celeba64.safetensors only if better.
celeba-stop: .venv/.installed
	$(PY) -m celebadiff.campaign runs/celeba64 --n 64 --strengths 1.5,2

# The campaign's first stage from scratch (3,000 steps, about 1.5 h on 2 CPU cores), and the real-face judge.
train-celeba-stage1: .venv/.installed
	$(PY) -m celebadiff train --data $(CELEBA) --data $(CELEBA_HALF) --preset celeba64 --out runs/celeba64-stage1 \
	  $$(test -f runs/celeba64-stage1/checkpoints/last.safetensors && echo --resume)

celeba-judge: .venv/.installed
	$(PY) -m celebadiff classify train --data $(CELEBA) --data $(CELEBA_HALF) --out runs/celeba64-judge \
	  --image-size 64 --steps 2000 --pos-weight-cap 1
	cp runs/celeba64-judge/classifier.safetensors checkpoints/celeba64-judge.safetensors

# Reproduce the committed judge of the built-in faces (the oracle; about 4 minutes).
demo-judge: .venv/.installed
	$(PY) -c "from celebadiff.classifier import train_oracle; train_oracle('runs/demo-judge')"
	cp runs/demo-judge/classifier.safetensors checkpoints/demo-judge.safetensors

bench: .venv/.installed data
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) "$$b"; done

clean:
	rm -rf build .pytest_cache
