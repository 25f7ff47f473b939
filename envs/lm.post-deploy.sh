#!/usr/bin/env sh
# Snakemake runs this once, right after it creates the env from lm.yaml (if this fails, it deletes the env
# again): `sh` on a copy in .snakemake/conda/, inside the activated env ($CONDA_PREFIX is the env, its bin/ first
# on PATH, the compiler's activation applied), from the workflow's working directory: the repository root (or a
# copy of it), where every relative path of the workflow points. It builds KenLM's lmplz and build_binary into the
# env's bin/ with envs/build_kenlm.sh and the env's compiler, CMake and Boost (lm.yaml).
set -eu
: "${CONDA_PREFIX:?lm.post-deploy.sh runs inside the activated env}"
BUILD=envs/build_kenlm.sh
[ -f "$BUILD" ] || { echo "lm.post-deploy.sh: $BUILD not found in $(pwd): run Snakemake from the repository root" >&2; exit 1; }
# CMake looks in CMAKE_PREFIX_PATH before the system's directories: the env's Boost, zlib, bzip2 and xz.
CMAKE_PREFIX_PATH="$CONDA_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export CMAKE_PREFIX_PATH
PYTHON="$CONDA_PREFIX/bin/python" sh "$BUILD" "$CONDA_PREFIX/bin"
# Both programs must start (a missing shared library would show here, not in the first language_model job).
for program in lmplz build_binary; do
    "$CONDA_PREFIX/bin/$program" --help 2>&1 | grep -q -i "usage\|kneser-ney" \
        || { echo "lm.post-deploy.sh: $CONDA_PREFIX/bin/$program does not run" >&2; exit 1; }
done
