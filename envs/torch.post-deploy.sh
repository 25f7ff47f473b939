#!/usr/bin/env sh
# Snakemake runs this once, right after it creates the env from torch.yaml (if this fails, it deletes the env
# again): `sh` on a copy in .snakemake/conda/, inside the activated env ($CONDA_PREFIX is the env, its bin/ first
# on PATH, the compiler's activation applied), from the workflow's working directory. It needs nothing from the
# repository: both packages come from PyPI.
set -eu
PYTHON="${CONDA_PREFIX:?torch.post-deploy.sh runs inside the activated env}/bin/python"
# kenlm (pyctcdecode's n-gram scorer): PyPI has only its source, built here with the env's compiler (cxx-compiler)
# against the env's zlib, bzip2 and xz (CMake looks in CMAKE_PREFIX_PATH before the system's directories).
CMAKE_PREFIX_PATH="$CONDA_PREFIX${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export CMAKE_PREFIX_PATH
"$PYTHON" -m pip install --no-deps "kenlm==0.3.0"
# pyctcdecode without its dependencies: its metadata pins numpy<2 although it runs on numpy 2
# (kensho-technologies/pyctcdecode#118, #119); what it imports (numpy, pygtrie, kenlm) is installed already.
"$PYTHON" -m pip install --no-deps "pyctcdecode==0.5.0"
"$PYTHON" -c "import kenlm, pyctcdecode"
