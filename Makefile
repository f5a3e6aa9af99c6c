# Entry points: `make verify` certifies a model, `make test` runs the test suite. Nothing needs exporting:
# the virtual environment, Icarus Verilog and the shared libpython cocotb needs are set up on demand.

VENV := .venv
STAMP := $(VENV)/.installed
PYTHON_BASE ?= $(shell command -v python3.11 || command -v python3)
TEST_DIRS := $(wildcard tests testbench)
PYTEST_ARGS ?=
# Test files run in parallel, one pytest worker per core, each file's tests in one worker (pytest-xdist)
PYTEST_WORKERS ?= auto
PARALLEL := -n $(PYTEST_WORKERS) --dist loadfile
MODEL ?= dnn_vae_ptq8

# $(call apt_install,PACKAGE,WHAT): install a Debian package when running as root with apt-get,
# otherwise stop with the command that installs it.
apt_install = if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "Installing $(1) ($(2)) with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1); \
	else \
		echo "error: $(2) is missing; install it with: sudo apt-get install -y $(1)" >&2; exit 1; \
	fi

.PHONY: help venv verify test regression simulators resources clean

help:
	@echo "make verify      certify model $(MODEL) (MODEL=... to choose another)"
	@echo "make test        run the test suite, without the long regressions"
	@echo "make regression  run the whole test suite, regressions included"
	@echo "make resources   Yosys LUT/FF/DSP estimates of the generated RTL of the zoo models (installs yosys)"
	@echo "make venv        create $(VENV) and install this project into it (done by the targets above)"
	@echo "make clean       delete build/ (cached compilations and simulations)"

venv: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(VENV)/bin/python ]; then \
		"$(PYTHON_BASE)" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null || { \
			echo "error: '$(PYTHON_BASE)' is not Python 3.11; install python3.11 or run make PYTHON_BASE=/path/to/python3.11" >&2; \
			exit 1; }; \
		echo "Creating $(VENV) with $(PYTHON_BASE)"; \
		"$(PYTHON_BASE)" -m venv $(VENV) || { \
			rm -rf $(VENV); \
			$(call apt_install,python3.11-venv,the venv module of Python 3.11) && "$(PYTHON_BASE)" -m venv $(VENV); \
		}; \
	fi
	$(VENV)/bin/python -m pip install --progress-bar off -e .
	touch $@

simulators: venv
	@command -v iverilog >/dev/null 2>&1 || { $(call apt_install,iverilog,Icarus Verilog); }
	@$(VENV)/bin/python -c 'import find_libpython, sys; sys.exit(find_libpython.find_libpython() is None)' || { \
		$(call apt_install,libpython3.11,the shared Python library that cocotb embeds in simulators); }

verify: venv simulators
	$(VENV)/bin/verify --model $(MODEL)

test: venv simulators
	$(VENV)/bin/python -m pytest -m "not regression" $(PARALLEL) $(PYTEST_ARGS) $(TEST_DIRS)

regression: venv simulators
	$(VENV)/bin/python -m pytest $(PARALLEL) $(PYTEST_ARGS) $(TEST_DIRS)

resources: venv
	@command -v yosys >/dev/null 2>&1 || { $(call apt_install,yosys,Yosys (resource estimates)); }
	$(VENV)/bin/python -m firmware.resources

clean:
	rm -rf build
