# imagegen tasks. `./bootstrap RECIPE` installs the Python side first; the recipes install the rest.

set shell := ["bash", "-euo", "pipefail", "-c"]

profile := "examples/laptop.toml"

# List the recipes.
default:
    @just --list

# Install QEMU, OVMF and the pinned mkosi on this host (idempotent).
setup:
    imagegen setup

# Build the example host's lab image and prove its network failover in a VM.
demo: setup
    imagegen build {{ profile }} --lab
    imagegen test {{ profile }} --junit build/junit.xml --json-file build/verdict.json

# Every test: fast unit tests, then the image build and the VM boots (about 25-30 min on 2 cores, TCG).
test: setup lint
    pytest -m "not slow and not vm" -q
    pytest -m "slow or vm" -q -x --timeout=3600

# The fast tests only (no mkosi, no VM); no host set-up needed.
test-fast:
    pytest -m "not slow and not vm" -q

# Static checks.
lint:
    ruff check imagegen tests bench
    mypy imagegen

# Benchmarks: print a table of figures and write bench/results.json.
bench: setup
    python3 bench/run.py
