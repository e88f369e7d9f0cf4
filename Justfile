# imagegen tasks. `./bootstrap RECIPE` installs the Python side into .venv first; the recipes install the rest.
# The recipes run the tools of the project's .venv whether it is activated or not.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

profile := "examples/laptop.toml"

# List the recipes.
default:
    @just --list

# Install QEMU, OVMF, the pinned mkosi and the tools the tests call on this host (idempotent).
setup:
    imagegen setup

# Build the example host's lab image and prove its network failover in a VM.
demo: setup
    imagegen build {{ profile }} --lab
    imagegen test {{ profile }} --junit build/junit.xml --json-file build/verdict.json

# Every test: fast unit tests (also once with mkosi hidden), then the image build and the VM boots (about 25-30 min on 2 cores, TCG).
test: setup lint
    pytest -m "not slow and not vm" -q
    IMAGEGEN_TEST_NO_MKOSI=1 pytest -m "not slow and not vm" -q
    pytest -m "slow or vm" -q -x --timeout=3600

# The fast tests only (no mkosi, no VM); no host set-up needed (checks needing systemd or wpasupplicant skip without them).
test-fast:
    pytest -m "not slow and not vm" -q

# Static checks.
lint:
    ruff check imagegen tests bench
    mypy imagegen

# Benchmarks: print a table of figures and write bench/results.json.
bench: setup
    python3 bench/run.py

# Clean Debian 12 and 13 roots (debootstrap, as root), a clone of this checkout in each, the README's two commands there, timed. Long; not part of CI.
fresh-check *ARGS:
    scripts/fresh-check {{ ARGS }}
