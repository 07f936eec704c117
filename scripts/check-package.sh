#!/usr/bin/env bash
# check-package.sh -- build workerid's sdist and wheel two ways and prove that
# what would be published works:
#
#   1. PyPI toolchain: `python -m build` (isolated: setuptools from PyPI) in a
#      throw-away venv with build and twine; `twine check --strict`; the sdist
#      must carry LICENSE, CHANGELOG.md, docs/, bench/, scripts/ and all of
#      tests/ (conftest.py, prefork.py, helpers/, e2e/); the wheel the package
#      data and LICENSE.
#   2. The sdist is unpacked, a venv gets the built wheel plus the `test`
#      dependency group (pytest, hypothesis; read from the sdist's own
#      pyproject.toml), and a quick subset of the sdist's tests runs against the
#      installed wheel (tests/conftest.py checks that the imported workerid is
#      the same code as the sdist's src/workerid).
#   3. Debian 12's own toolchain: /usr/bin/python3 -m build --no-isolation
#      with python3-build, python3-setuptools (66.1.1) and python3-wheel
#      (apt-get installed when missing and run as root), and
#      `pip wheel --no-build-isolation --no-index` with Debian's pip; the
#      results must hold the same files; the Debian-built sdist's tests run
#      against the Debian-built wheel.
#
# Nothing is written to the work tree or to /opt/workerid/venv: everything
# happens in a temporary directory (kept with WORKERID_PKG_KEEP=1).  Needs
# PyPI (pip) and, for step 3 on a machine without the Debian packages, apt.
# Exits non-zero on the first failure.
#   PYTHON=...                 interpreter for the venvs (default /usr/bin/python3)
#   WORKERID_PKG_TESTS="..."   pytest arguments: the sdist tests to run (default
#                              below). tests/test_election.py's privilege-dropping
#                              test runs workers as nobody, so $PYTHON must be
#                              readable by nobody (not so for a pyenv under /root:
#                              add --deselect for it there).
set -euo pipefail
umask 022
# shellcheck source=scripts/_lib.sh
. "$(dirname "$0")/_lib.sh" check-package
# run, without the notes pip prints for a configured local index directory
# that does not exist on this machine.
pip_run() {
    local rc=0
    printf '[check-package] + %s\n' "$*"
    "$@" 2>&1 | { grep -v "^WARNING: Location 'file:.* is ignored: it is neither a file nor a directory" || true; } || rc=$?
    return "$rc"
}

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="${PYTHON:-/usr/bin/python3}"
# The quick subset of the sdist's own tests.
TESTS="${WORKERID_PKG_TESTS:-tests/test_package.py tests/test_api.py tests/test_ledger.py tests/test_election.py}"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PYTHONNOUSERSITE=1
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV || true

WORK="$(mktemp -d /tmp/workerid-pkg.XXXXXX)"
# World-readable: some tests run workers as nobody, which import the wheel
# from the test venv and run the unpacked sdist's tests/prefork.py.
chmod 755 "$WORK"
if [ "${WORKERID_PKG_KEEP:-0}" = 1 ]; then
    trap 'log "kept $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi
log "work dir $WORK, source $ROOT"

# A copy of the work tree as `git clone` + local edits would give it, without
# caches or earlier build output (setuptools writes build/ and *.egg-info).
copy_tree() {
    mkdir -p "$1"
    tar -C "$ROOT" --exclude=./.git --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.venv \
        --exclude=./.mypy_cache --exclude=./.pytest_cache --exclude=./.ruff_cache \
        --exclude=./.hypothesis -cf - . | tar -C "$1" -xf -
}
VERSION="$("$PYTHON" - "$ROOT/src/workerid/__init__.py" <<'EOF'
import ast, sys
tree = ast.parse(open(sys.argv[1]).read())
(v,) = [n.value.value for n in tree.body if isinstance(n, ast.Assign)
        and any(getattr(t, "id", None) == "__version__" for t in n.targets)]
print(v)
EOF
)"
log "version (src/workerid/__init__.py): $VERSION"

# check_dists DIR LABEL: DIR holds exactly one sdist and one wheel of $VERSION
# with the files they must have.
check_dists() {
    local dir="$1" label="$2" sdist wheel
    sdist="$dir/workerid-$VERSION.tar.gz"
    wheel="$dir/workerid-$VERSION-py3-none-any.whl"
    [ -f "$sdist" ] || die "$label: no $sdist ($(ls "$dir"))"
    [ -f "$wheel" ] || die "$label: no $wheel ($(ls "$dir"))"
    tar -tzf "$sdist" | sed "s|^workerid-$VERSION/||" | grep -v '/$' | sort >"$dir.sdist.txt"
    "$PYTHON" -c 'import sys, zipfile; print("\n".join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))' \
        "$wheel" >"$dir.wheel.txt"
    local f
    for f in PKG-INFO LICENSE README.md CHANGELOG.md MANIFEST.in pyproject.toml \
        src/workerid/__init__.py src/workerid/py.typed src/workerid/neutron/neutron-api.wsgi \
        src/workerid/neutron/neutron-api.conf tests/conftest.py tests/prefork.py \
        tests/helpers/__init__.py tests/helpers/_master.py tests/e2e/conftest.py \
        tests/e2e/neutron_env.sh tests/test_package.py docs/design.md bench/README.md \
        scripts/setup-system.sh scripts/test.sh scripts/check-package.sh; do
        grep -qxF "$f" "$dir.sdist.txt" || die "$label: sdist lacks $f"
    done
    [ "$(grep -c '^tests/test_.*\.py$' "$dir.sdist.txt")" = "$(cd "$ROOT" && ls tests/test_*.py | wc -l)" ] ||
        die "$label: sdist does not hold every tests/test_*.py"
    ! grep -E '(__pycache__|\.py[cod]$)' "$dir.sdist.txt" || die "$label: sdist holds bytecode"
    for f in workerid/__init__.py workerid/py.typed workerid/neutron/neutron-api.wsgi \
        workerid/neutron/neutron-api.conf; do
        grep -qxF "$f" "$dir.wheel.txt" || die "$label: wheel lacks $f"
    done
    grep -qE "^workerid-$VERSION\.dist-info/(licenses/)?LICENSE$" "$dir.wheel.txt" ||
        die "$label: wheel lacks its LICENSE"
    ! grep -E '^(tests|docs|bench|scripts)/' "$dir.wheel.txt" || die "$label: wheel holds non-package files"
    "$PYTHON" - "$wheel" "$VERSION" <<'EOF' || die "$label: wheel METADATA is wrong"
import sys, zipfile
from email.parser import Parser
whl, version = sys.argv[1:]
z = zipfile.ZipFile(whl)
(name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
meta = Parser().parsestr(z.read(name).decode())
assert meta["Version"] == version, (meta["Version"], version)
assert "License :: OSI Approved :: Apache Software License" in meta.get_all("Classifier")
assert meta.get_all("License-File") == ["LICENSE"], meta.get_all("License-File")
reqs = meta.get_all("Requires-Dist") or []
assert not [r for r in reqs if r.split()[0].split(">")[0].split("(")[0].lower()
            in ("pytest", "hypothesis", "mypy", "ruff")], reqs
(neutron,) = [r for r in reqs if r.lower().startswith("neutron")]
assert "<30" in neutron and ">=28" in neutron, neutron
(wheel_file,) = [n for n in z.namelist() if n.endswith(".dist-info/WHEEL")]
generator = Parser().parsestr(z.read(wheel_file).decode())["Generator"]
print(f"[check-package]     {name}: Generator {generator}, Metadata-Version {meta['Metadata-Version']}, "
      f"Version {meta['Version']}, Requires-Python {meta['Requires-Python']}, "
      f"extras {meta.get_all('Provides-Extra')}, {neutron}")
EOF
    log "$label: sdist $(wc -l <"$dir.sdist.txt") files, wheel $(wc -l <"$dir.wheel.txt") files: required files present"
}

# test_sdist DIR LABEL VENV: unpack DIR's sdist, install DIR's wheel into VENV,
# run $TESTS of the unpacked sdist against it.
test_sdist() {
    local dir="$1" label="$2" venv="$3" tree
    tree="$WORK/unpacked-$label"
    mkdir -p "$tree"
    tar -C "$tree" -xzf "$dir/workerid-$VERSION.tar.gz"
    tree="$tree/workerid-$VERSION"
    pip_run "$venv/bin/python" -m pip install -q --no-cache-dir --force-reinstall --no-deps \
        "$dir/workerid-$VERSION-py3-none-any.whl"
    local imported
    imported="$(cd "$tree" && "$venv/bin/python" -c 'import workerid; print(workerid.__file__)')"
    case "$imported" in
        "$venv"/lib/python3*/site-packages/workerid/__init__.py) ;;
        *) die "$label: the unpacked sdist imports workerid from $imported, not the installed wheel" ;;
    esac
    log "$label: running the unpacked sdist's tests against $imported"
    # shellcheck disable=SC2086  # $TESTS is a list of paths
    (cd "$tree" && run "$venv/bin/python" -m pytest -p no:cacheprovider -q $TESTS) ||
        die "$label: the unpacked sdist's tests failed"
}

# ---------------------------------------------------------------------------
# 1. PyPI toolchain (isolated build)
# ---------------------------------------------------------------------------
log "step 1: PyPI toolchain: build + twine in a venv of $PYTHON"
run "$PYTHON" -m venv "$WORK/tools"
pip_run "$WORK/tools/bin/python" -m pip install -q --no-cache-dir build twine
"$WORK/tools/bin/python" -m pip list --format=freeze 2>/dev/null |
    grep -iE '^(build|twine|pip)==' | sed 's/^/[check-package]     /'
copy_tree "$WORK/tree-pypi"
# No --sdist/--wheel: build makes the sdist, then the wheel FROM that sdist.
run "$WORK/tools/bin/python" -m build -o "$WORK/dist-pypi" "$WORK/tree-pypi" >"$WORK/build-pypi.log" 2>&1 ||
    {
        tail -40 "$WORK/build-pypi.log"
        die "isolated build failed"
    }
grep -E '^Successfully built' "$WORK/build-pypi.log" | sed 's/^/[check-package]     /'
run "$WORK/tools/bin/twine" check --strict "$WORK/dist-pypi"/* || die "twine check failed"
check_dists "$WORK/dist-pypi" pypi
log "sdist highlights: $(grep -cE '^tests/' "$WORK/dist-pypi.sdist.txt") files under tests/, among them" \
    $(grep -E '^tests/(conftest|prefork)\.py$|^tests/(helpers|e2e)/__init__\.py$' "$WORK/dist-pypi.sdist.txt") \
    $(grep -E '^(LICENSE|CHANGELOG\.md|README\.md|docs/.*|bench/.*\.md|scripts/.*)$' "$WORK/dist-pypi.sdist.txt")

# ---------------------------------------------------------------------------
# 2. the unpacked sdist's tests against the installed wheel
# ---------------------------------------------------------------------------
log "step 2: test venv: the wheel + the sdist's [dependency-groups] test"
run "$PYTHON" -m venv "$WORK/testenv"
# PEP 735 groups need pip >= 25.1.
pip_run "$WORK/testenv/bin/python" -m pip install -q --no-cache-dir --upgrade "pip>=25.1"
mkdir -p "$WORK/unpacked-pypi"
tar -C "$WORK/unpacked-pypi" -xzf "$WORK/dist-pypi/workerid-$VERSION.tar.gz"
pip_run "$WORK/testenv/bin/python" -m pip install -q --no-cache-dir \
    --group "$WORK/unpacked-pypi/workerid-$VERSION/pyproject.toml:test"
rm -rf "$WORK/unpacked-pypi"
"$WORK/testenv/bin/python" -m pip list --format=freeze 2>/dev/null |
    grep -iE '^(pytest|hypothesis)==' | sed 's/^/[check-package]     /'
test_sdist "$WORK/dist-pypi" pypi "$WORK/testenv"

# ---------------------------------------------------------------------------
# 3. Debian 12's toolchain (no isolation: Debian's setuptools and wheel)
# ---------------------------------------------------------------------------
log "step 3: Debian toolchain: /usr/bin/python3 -m build --no-isolation"
DEB_PKGS=(python3-build python3-setuptools python3-wheel python3-pip)
missing=()
for pkg in "${DEB_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" -eq 0 ] || die "Debian packages missing (${missing[*]}); run as root or apt-get install them"
    export DEBIAN_FRONTEND=noninteractive
    run apt-get install -y --no-install-recommends "${missing[@]}" >"$WORK/apt.log" 2>&1 ||
        { run apt-get update >>"$WORK/apt.log" 2>&1 &&
            run apt-get install -y --no-install-recommends "${missing[@]}" >>"$WORK/apt.log" 2>&1; } ||
        {
            tail -20 "$WORK/apt.log"
            die "apt-get install ${missing[*]} failed"
        }
fi
DEB_ENV=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$WORK" PYTHONNOUSERSITE=1 LANG=C.UTF-8)
"${DEB_ENV[@]}" /usr/bin/python3 - <<'EOF' || die "/usr/bin/python3 does not use Debian's own setuptools/wheel/build"
import build, setuptools, wheel, sys
for mod in (setuptools, wheel, build):
    where = mod.__file__
    print(f"[check-package]     {mod.__name__} {getattr(mod, '__version__', '?')} from {where}")
    assert where.startswith("/usr/lib/python3/dist-packages/"), where
print(f"[check-package]     python {sys.version.split()[0]} {sys.executable}")
EOF
copy_tree "$WORK/tree-debian"
run "${DEB_ENV[@]}" /usr/bin/python3 -m build --no-isolation -o "$WORK/dist-debian" "$WORK/tree-debian" \
    >"$WORK/build-debian.log" 2>&1 || {
    tail -40 "$WORK/build-debian.log"
    die "Debian-toolchain build failed"
}
grep -E '^Successfully built' "$WORK/build-debian.log" | sed 's/^/[check-package]     /'
check_dists "$WORK/dist-debian" debian
run "$WORK/tools/bin/twine" check --strict "$WORK/dist-debian"/* || die "twine check (Debian build) failed"
for kind in sdist wheel; do
    # PKG-INFO/egg-info/dist-info names may differ between the backends;
    # the project's own files must not.
    if ! diff <(grep -vE '(egg-info|dist-info)/' "$WORK/dist-pypi.$kind.txt") \
        <(grep -vE '(egg-info|dist-info)/' "$WORK/dist-debian.$kind.txt"); then
        die "the Debian-built $kind holds other files than the isolated build's"
    fi
done
log "debian: sdist and wheel hold the same files as the isolated build"
copy_tree "$WORK/tree-debian-pip"
run "${DEB_ENV[@]}" /usr/bin/python3 -m pip wheel -q --no-build-isolation --no-deps --no-index \
    -w "$WORK/dist-debian-pip" "$WORK/tree-debian-pip" >"$WORK/pip-debian.log" 2>&1 || {
    tail -40 "$WORK/pip-debian.log"
    die "Debian pip wheel --no-build-isolation failed"
}
[ -f "$WORK/dist-debian-pip/workerid-$VERSION-py3-none-any.whl" ] || die "Debian pip made no wheel"
log "debian: pip $("${DEB_ENV[@]}" /usr/bin/python3 -m pip --version | cut -d' ' -f2) wheel --no-build-isolation --no-index: workerid-$VERSION-py3-none-any.whl"
test_sdist "$WORK/dist-debian" debian "$WORK/testenv"

log "OK: isolated and Debian-toolchain builds of workerid $VERSION pass (done in $(($(date +%s) - START))s)"
