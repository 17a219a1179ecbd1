#!/usr/bin/env bash
# CI of the Python binding, from a fresh clone: lints the Rust crate, builds the package from
# source in a virtual environment (PyPI and crates.io only), runs the pytest suite, checks the
# type stubs, runs Django's own cache test suite against the Django backend, and smoke-runs the
# benchmark.
#
#   bash bindings/python/ci.sh
#
# Environment: PYTHON (default python3), DJANGO_VERSION (default below), VENV (default: a new
# temporary one, removed at exit).
set -euo pipefail
cd "$(dirname "$0")"
HERE=$PWD

PYTHON=${PYTHON:-python3}
# Django's tests must match the installed Django: both come from this version.
DJANGO_VERSION=${DJANGO_VERSION:-5.2.19}

step() { printf '\n=== python binding: %s (%s)\n' "$*" "$(date -u +%T)"; }

WORK=$(mktemp -d)
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
VENV=${VENV:-$WORK/venv}

step "rustfmt and clippy (the extension crate and the Rust peer)"
cargo fmt -- --check
cargo clippy --release --all-targets --quiet -- -D warnings

step "virtual environment ($($PYTHON --version))"
"$PYTHON" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip

step "pip install ./bindings/python (built from source by maturin)"
# The extension's build reuses bindings/python/target between runs on one machine.
if ! python -m pip install -v "$HERE" > "$WORK/pip-install.log" 2>&1; then
  tail -60 "$WORK/pip-install.log"
  exit 1
fi
grep -E "Compiling shmstate|Finished .release|Successfully installed" "$WORK/pip-install.log" || true
python -c "import shmstate, sys; print('shmstate', shmstate.__version__, 'from', shmstate.__file__)"
case "$(python -c 'import shmstate; print(shmstate.__file__)')" in
  "$HERE"/*) echo "shmstate was imported from the source tree, not the installed package"; exit 1 ;;
esac

step "test dependencies"
python -m pip install -q "pytest>=7" "pytest-timeout>=2" "django==$DJANGO_VERSION" "gunicorn>=21" mypy

step "Rust peer for the cross-language tests (cargo build --example rust_peer)"
cargo build --release --quiet --example rust_peer
export SHMSTATE_RUST_PEER="$HERE/target/release/examples/rust_peer"

step "pytest"
# Runs from a copy of tests/ outside the source tree, so that `import shmstate` can only find
# the installed package. Exit code 5 (no tests collected) fails like any other.
cp -r tests "$WORK/tests"
cp -r examples "$WORK/examples"
set +e
(cd "$WORK" && python -m pytest tests -p no:cacheprovider --timeout 300 -q -ra)
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests"
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

step "type stubs (mypy stubtest against the installed module)"
printf '[mypy]\nignore_missing_imports = True\n' > "$WORK/mypy.ini"
(cd "$WORK" && python -m mypy.stubtest shmstate --mypy-config-file "$WORK/mypy.ini")

step "Django's own cache tests (BaseCacheTests) against shmstate.django.ShmStateCache"
(cd "$WORK" && python -m pip download -q --no-deps --no-binary :all: "django==$DJANGO_VERSION" -d dl)
tar -xzf "$WORK"/dl/django-"$DJANGO_VERSION".tar.gz -C "$WORK"
DJANGO_TESTS="$WORK/django-$DJANGO_VERSION/tests"
cp tests/django/tests_shmstate.py "$DJANGO_TESTS/cache/tests_shmstate.py"
(cd "$DJANGO_TESTS" && python runtests.py cache.tests_shmstate --parallel 1 -v 2 2>&1) | tee "$WORK/django.log" | grep -E "^(Ran|OK|FAILED)|\.\.\. (FAIL|ERROR|skipped)" || true
grep -qE "^Ran [1-9][0-9]* tests?" "$WORK/django.log" || { echo "Django's cache tests did not run"; tail -50 "$WORK/django.log"; exit 1; }
grep -qE "^OK( \(skipped=[0-9]+\))?$" "$WORK/django.log" || { echo "Django's cache tests failed"; tail -80 "$WORK/django.log"; exit 1; }

step "benchmark smoke (bench/bench.py --smoke: the script runs; the figures mean nothing)"
python -m pip install -q diskcache redis
python bench/bench.py --smoke | tail -4

step "python binding: done"
