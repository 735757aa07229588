# The two set-up commands of the README: `make demo` trains the bundled scene, `make test` runs the tests.
# Each installs what it needs first (scripts/install.sh: Debian libraries for open3d, .venv, torch, the package).
VENV := .venv
STAMP := $(VENV)/.featurefields-installed
# loadgroup: the browser tests (marked xdist_group) share one worker, one browser and one viewer
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: demo test install scene

NATIVE_SOURCES := $(shell find cuda_ext -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh')

$(STAMP): pyproject.toml setup.py scripts/install.sh $(NATIVE_SOURCES)
	bash scripts/install.sh
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ff-train scenes/tabletop --out outputs/tabletop

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

scene: $(STAMP)
	$(VENV)/bin/ff-scene tabletop --seed 0 --out scenes/tabletop
