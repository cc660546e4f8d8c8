# Two commands on a fresh machine (Python 3.11 + Java 17):
#   make demo   set up, build vectors from the King James Bible into ./lake, query them
#   make test   run the tests
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
CORPUS ?= data/kjv
LAKE ?= ./lake

.PHONY: packages setup demo test bench clean

# venv + package (`make packages`), then Delta's JARs from Maven Central and the JVM class
# archive (cached under ~/.cache/bitcipher; a session without them resolves the JARs itself,
# just slower)
# pyproject.toml states compatible ranges; constraints.txt pins the versions the tests ran with
$(VENV)/.packages: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,bench,sql,s3,notebook]"
	touch $@

$(VENV)/.ready: $(VENV)/.packages
	$(BIN)/python -m bitcipher.runtime.jars
	touch $@

packages: $(VENV)/.packages
setup: $(VENV)/.ready

$(CORPUS): | setup
	$(BIN)/python benchmarks/corpora.py kjv --out $(CORPUS) --shards 8

demo: setup $(CORPUS)
	$(BIN)/bitcipher build --corpus $(CORPUS) --lake $(LAKE)
	$(BIN)/bitcipher neighbors god --lake $(LAKE) -k 8
	$(BIN)/bitcipher neighbors king --lake $(LAKE) -k 8
	$(BIN)/bitcipher neighbors water --lake $(LAKE) -k 8
	$(BIN)/bitcipher sql "SELECT b.word, round(cosine(a.vector, b.vector), 4) AS similarity FROM vectors a JOIN vectors b ON a.word = 'jerusalem' AND b.word <> a.word ORDER BY similarity DESC LIMIT 5" --lake $(LAKE)

# two test files at a time (most of a test's time is JVM start-up and Delta commits, not CPU);
# `make test PYTEST_ARGS=` runs them one by one
PYTEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder
test: setup
	$(BIN)/python -m pytest tests -q --durations=25 $(PYTEST_ARGS)

# the build against gensim CBOW, same run: the paper's settings, then the defaults
bench: setup
	$(BIN)/python benchmarks/corpora.py mix --out data/mix
	$(BIN)/python benchmarks/bench_build.py --corpus data/mix --warmup --build-arg=--transform --build-arg=neglog --build-arg=--project --build-arg=none
	$(BIN)/python benchmarks/bench_build.py --corpus data/mix --no-default-opts

clean:
	rm -rf $(LAKE) data .pytest_cache
