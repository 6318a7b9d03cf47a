#!/usr/bin/env bash
# Install the optional mmdet3d stack (the `[det3d]` bridge, docs/bev.md) into the current Python
# environment, on top of xmodal's pinned torch. mmdet3d 1.4.0 needs mmcv 2.1.0 with its compiled ops,
# and no mmcv wheel exists for torch 2.14, so mmcv is built from source (11-16 min on 2 CPU cores).
#
#   bash tools/install_det3d.sh                      # into the active python
#   PYTHON=/path/to/venv/bin/python bash tools/install_det3d.sh
#
# A separate virtual environment keeps the default one (and its test run) unchanged:
#   python -m venv --system-site-packages .venv-det3d && PYTHON=.venv-det3d/bin/python bash tools/install_det3d.sh
set -euo pipefail
PY=${PYTHON:-python}

# mmcv 2.1.0's setup.py uses pkg_resources (gone in setuptools 81) and must see the installed torch
# (no build isolation). torch 2.14's headers need C++20, but the setup.py passes -std=c++17 after any
# CXXFLAGS, so the source is patched before the build.
"$PY" -m pip install "setuptools<81" wheel ninja
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
"$PY" -m pip download --no-deps --no-binary :all: "mmcv==2.1.0" -d "$src"
tar -xzf "$src"/mmcv-2.1.0.tar.gz -C "$src"
sed -i 's/-std=c++1[47]/-std=c++20/g' "$src"/mmcv-2.1.0/setup.py
MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" "$PY" -m pip install --no-build-isolation "$src"/mmcv-2.1.0
"$PY" -m pip install "mmdet==3.3.0"
# mmdet3d's own requirements would pull versions that conflict with xmodal's pins: install it bare,
# then the packages it actually imports.
"$PY" -m pip install --no-deps "mmdet3d==1.4.0" "nuscenes-devkit==1.2.0" "lyft-dataset-sdk==0.0.8"
"$PY" -m pip install numba plyfile trimesh scikit-image pyquaternion pandas scikit-learn cachetools
"$PY" -c "import mmcv, mmcv.ops, mmdet, mmdet3d; print('mmcv', mmcv.__version__, 'mmdet', mmdet.__version__, 'mmdet3d', mmdet3d.__version__)"
