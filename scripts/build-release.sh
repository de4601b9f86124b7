#!/usr/bin/env bash
# build-release.sh ARCHIVE: one tar holding Wharf's wheel and a wheel of every pinned dependency
# (all extras), which the Ansible roles install on each host with `pip --no-index`: hosts need
# no access to PyPI, and every host of a release runs the same bytes.
#
# The wheels are chosen for the Python that builds them (its version decides dependencies with
# markers: redis needs async-timeout below 3.11.3) and built for its architecture: build with the
# Python the hosts run. PYTHON picks it (default: /usr/bin/python3, as on Debian hosts, else
# python3); it needs the venv module (Debian: python3-venv).
set -euo pipefail

archive="${1:?usage: $0 ARCHIVE.tar}"
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x /usr/bin/python3 ]]; then python=/usr/bin/python3; else python=python3; fi
fi

work="$(mktemp -d -t wharf-release-XXXXXX)"
trap 'rm -rf "$work"' EXIT
echo "==> building Wharf's wheel and its dependencies' wheels for $("$python" --version 2>&1)" >&2
"$python" -m venv "$work/venv"
python="$work/venv/bin/python"
# A copy of the tree, so that the build leaves nothing (build/, *.egg-info) in the checkout.
mkdir "$work/src" "$work/wheels"
tar -C "$root" --exclude=.venv --exclude=.git --exclude=var --exclude=dist --exclude=test-results \
  --exclude='*.egg-info' --exclude=build --exclude=.typecheck --exclude='.*_cache' -cf - . \
  | tar -C "$work/src" -xf -
if ! "$python" -m pip wheel --disable-pip-version-check --wheel-dir "$work/wheels" "$work/src[all]" \
    >"$work/pip.log" 2>&1; then
  tail -n 30 "$work/pip.log" >&2
  echo "==> pip wheel failed" >&2
  exit 1
fi
mkdir -p "$(dirname "$archive")"
tar -C "$work/wheels" -cf "$archive.tmp" .
mv "$archive.tmp" "$archive"
echo "==> $archive ($(du -h "$archive" | cut -f1), $(ls "$work/wheels" | wc -l) wheels)" >&2
