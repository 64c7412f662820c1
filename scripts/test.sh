#!/usr/bin/env bash
# The full test suite on a fresh machine: installs the system packages the MPI
# executor needs (Debian/Ubuntu: OpenMPI, and libclang for the bindings), then
# runs every test of the workspace with the MPI, dataflow and Ballista
# executors compiled in (`ballista` implies `dataflow`; the first build
# compiles DataFusion and Ballista: about 30 minutes on 2 cores).
#
#   scripts/test.sh            # everything
#   PCMC_NO_INSTALL=1 scripts/test.sh   # do not touch system packages
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v mpicc >/dev/null 2>&1 || need+=(libopenmpi-dev openmpi-bin)
command -v mpirun >/dev/null 2>&1 || [ ${#need[@]} -gt 0 ] || need+=(openmpi-bin)
# libclang itself (not libclang-cpp, which other packages bring along).
ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/*/libclang-[0-9]*.so* >/dev/null 2>&1 || need+=(libclang-dev clang)
# R runs the walkthrough's R blocks (docs/walkthrough.md).
command -v Rscript >/dev/null 2>&1 || need+=(r-base-core)
if [ ${#need[@]} -gt 0 ] && [ -z "${PCMC_NO_INSTALL:-}" ]; then
    echo "== installing system packages: ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# OpenMPI refuses to run as root without these; tests oversubscribe 2 cores.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

cargo test --workspace --release --features pcmc-cli/mpi,pcmc-cli/ballista

# The walkthrough (docs/walkthrough.md): every block run in an empty
# directory with the binary the tests built, Python blocks in a virtual
# environment with pandas, pyarrow and ArviZ (created once, reused).
TARGET="${CARGO_TARGET_DIR:-target}"
VENV="${PCMC_VENV:-$HOME/.cache/pcmc-venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -c "import pandas, pyarrow, arviz" 2>/dev/null ||
    "$VENV/bin/pip" install -q pandas pyarrow arviz
python3 scripts/run-doc.py docs/walkthrough.md --pcmc "$TARGET/release/pcmc" --python "$VENV/bin/python"

# The Python entry (crates/pcmc-py, import name `pcmc`, distribution
# pcmc-rs): built by maturin into the same virtual environment (editable),
# then its pytest suite, with the binary above as the command line to match.
"$VENV/bin/python" -c "import maturin, pytest" 2>/dev/null ||
    "$VENV/bin/pip" install -q "maturin>=1.5,<2" pytest
(
    cd crates/pcmc-py
    VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
        CARGO_TARGET_DIR="${PCMC_PY_TARGET:-$HOME/.cache/pcmc-py-target}" \
        "$VENV/bin/maturin" develop --release --quiet
)
PCMC_BIN="$TARGET/release/pcmc" "$VENV/bin/python" -m pytest -q crates/pcmc-py/tests
# The notebook-style example.
"$VENV/bin/python" examples/python/first_model.py
