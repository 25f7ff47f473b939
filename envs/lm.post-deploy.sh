#!/usr/bin/env sh
# Snakemake runs this once, right after it creates the env from lm.yaml (if this fails, it deletes the env
# again): `sh` on a copy in .snakemake/conda/, inside the activated env ($CONDA_PREFIX is the env, its bin/ first
# on PATH, the compiler's activation applied), from Snakemake's working directory, which need not be the
# repository. So envs/build_kenlm.sh cannot be found from here: it is embedded below, byte for byte
# (tests/test_envs.py checks the copy), and builds KenLM's lmplz and build_binary into the env's bin/ with the
# env's compiler, CMake and Boost (lm.yaml).
set -eu
: "${CONDA_PREFIX:?lm.post-deploy.sh runs inside the activated env}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cat > "$WORK/build_kenlm.sh" <<'BUILD_KENLM_SH'
#!/usr/bin/env sh
# Builds KenLM's lmplz (the n-gram estimator) and build_binary into the directory given (default .venv/bin).
# The kenlm Python wheel only queries models; estimating one needs these binaries, which no wheel ships.
# Needs a C++ compiler, cmake, and Boost (program_options, system, thread) with zlib: on Debian/Ubuntu as
# root this script installs the Boost packages with apt-get; elsewhere install them first (or use a conda
# env with boost-cpp and cmake from conda-forge).
set -eu
BIN_DIR="${1:-.venv/bin}"
VERSION=0.3.0
# sha256 of the kenlm-0.3.0.tar.gz sdist PyPI serves (checked so a swapped archive is never compiled)
SHA256=c4628bb9fb63c8a6f9240035b8b037385cfc404cb72e933cf48878291edac1e8
PYTHON="${PYTHON:-$BIN_DIR/python}"

if [ -x "$BIN_DIR/lmplz" ] && [ -x "$BIN_DIR/build_binary" ]; then
    exit 0
fi
if [ ! -e /usr/include/boost/program_options.hpp ] && [ ! -e "${CONDA_PREFIX:-/nonexistent}/include/boost/program_options.hpp" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "build_kenlm.sh: installing Boost headers with apt-get (needed to build lmplz)"
        apt-get install -y -qq --no-install-recommends libboost-program-options-dev libboost-system-dev \
            libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev cmake g++ >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq --no-install-recommends libboost-program-options-dev \
             libboost-system-dev libboost-thread-dev libboost-test-dev zlib1g-dev libbz2-dev liblzma-dev cmake g++ >/dev/null; }
    else
        echo "build_kenlm.sh: Boost headers not found. Install libboost-program-options-dev libboost-system-dev" >&2
        echo "  libboost-thread-dev libboost-test-dev zlib1g-dev (or conda install -c conda-forge boost-cpp cmake)," >&2
        echo "  or put an existing KenLM lmplz on PATH and set decode.lmplz." >&2
        exit 1
    fi
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PYTHON" -m pip download --quiet --no-deps --no-binary kenlm --dest "$WORK" "kenlm==$VERSION"
echo "$SHA256  $WORK/kenlm-$VERSION.tar.gz" | sha256sum -c --quiet -
tar -xzf "$WORK/kenlm-$VERSION.tar.gz" -C "$WORK"
cmake -S "$WORK/kenlm-$VERSION" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DKENLM_MAX_ORDER=6 >"$WORK/cmake.log" 2>&1 \
    || { cat "$WORK/cmake.log" >&2; exit 1; }
cmake --build "$WORK/build" --target lmplz build_binary -j "$(nproc 2>/dev/null || echo 2)" >"$WORK/make.log" 2>&1 \
    || { tail -50 "$WORK/make.log" >&2; exit 1; }
mkdir -p "$BIN_DIR"
cp "$WORK/build/bin/lmplz" "$WORK/build/bin/build_binary" "$BIN_DIR/"
echo "build_kenlm.sh: lmplz and build_binary installed in $BIN_DIR"
BUILD_KENLM_SH
# CMake looks in CMAKE_PREFIX_PATH before the system's directories: the env's Boost, zlib, bzip2 and xz.
CMAKE_PREFIX_PATH="$CONDA_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export CMAKE_PREFIX_PATH
PYTHON="$CONDA_PREFIX/bin/python" sh "$WORK/build_kenlm.sh" "$CONDA_PREFIX/bin"
# Both programs must start (a missing shared library would show here, not in the first language_model job).
for program in lmplz build_binary; do
    "$CONDA_PREFIX/bin/$program" --help 2>&1 | grep -q -i "usage\|kneser-ney" \
        || { echo "lm.post-deploy.sh: $CONDA_PREFIX/bin/$program does not run" >&2; exit 1; }
done
