# Two commands do all the set-up from a fresh clone: `make labs` and `make test`.
# Both create .venv when it is missing and install the kit into it.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

# Quiet TensorFlow's C++ info and warning logs in batch runs (the runner and the grader also
# keep the banner TensorFlow prints before its logging starts out of executed notebooks).
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: labs test full unit nbval labresults bench student clean weights

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## weights: pretrain (once, cached in the data folder) the SmallVGG the quick profile uses
weights: $(STAMP)
	$(VENV)/bin/faceattr-lab weights

## labs: run every lab headlessly (papermill) on its defaults and print a summary
labs: weights
	$(VENV)/bin/faceattr-lab labs run

## test: unit tests, every lab under nbval, then the tests of what each lab recorded
test: unit nbval labresults

## full: every lab's full profile (the path a student takes on Colab) run end to end on small
## synthetic copies of the real datasets' layouts; CI runs it after make test
full: $(STAMP)
	$(PY) -m pytest tests -m full -n 2

NBVAL_OUT := $(CURDIR)/outputs/nbval

# Two workers: much of a Keras test is single-threaded graph tracing, so two processes keep
# both cores busy. nbval keeps each notebook's cells together on one worker (--dist loadfile).
unit: $(STAMP)
	$(PY) -m pytest tests -m "not lab and not full" -n 2

# the pre-trained SmallVGG is made first, so no lab's time includes making it
nbval: weights
	rm -rf $(NBVAL_OUT)
	FACEATTR_LAB_OUTPUT=$(NBVAL_OUT) FACEATTR_LAB_QUIET=1 $(PY) -m pytest --nbval-lax \
		--nbval-current-env --nbval-cell-timeout=600 -p no:cacheprovider \
		-n 2 --dist loadfile labs

labresults: $(STAMP)
	FACEATTR_LAB_RESULTS_FROM=$(NBVAL_OUT) $(PY) -m pytest tests -m lab

## bench: input-pipeline throughput and seconds per epoch per model family (not tests;
## the figures go in the README)
bench: $(STAMP)
	$(VENV)/bin/faceattr-lab bench pipeline
	$(VENV)/bin/faceattr-lab bench models
	$(VENV)/bin/faceattr-lab bench resume
	$(VENV)/bin/faceattr-lab bench transfer
	$(VENV)/bin/faceattr-lab bench grading
	$(VENV)/bin/faceattr-lab bench predict

## student: build the student versions of the labs (solutions removed) into outputs/student,
## once every self-check passes on the teacher's solution; KIT_URL=... (e.g.
## git+https://github.com/my-course/faceattr-lab@v1.0) is where the copies' Colab cell installs the kit
KIT_URL ?=
student: $(STAMP)
	$(VENV)/bin/faceattr-lab labs student $(if $(KIT_URL),--kit-url '$(KIT_URL)')

clean:
	rm -rf outputs .pytest_cache
