#!/usr/bin/env bash
# Installs everything psgate needs to build and test, idempotently: a second run skips what is present.
#   scripts/setup.sh          build tools (wasm32 target, Trunk, wasm-bindgen, wasm-opt) and the demo target's
#                             Python environment (psrpcore's server role)
#                             and the Debian packages the relay builds against (libkrb5-dev and clang: the system GSSAPI
#                             for Kerberos from a ticket cache, its bindings made by bindgen)
#   scripts/setup.sh --test   also the test tools (Chromium + chromedriver, Python venv with psrpcore, pytest, PyYAML;
#                             for tests/peers: openssh-server, psrpcore for /usr/bin/python3, devious-pypsrp's venv,
#                             pypsrp and pyspnego in the main venv for the WinRM peer; an MIT Kerberos KDC — krb5-kdc,
#                             krb5-admin-server, krb5-user — and python-gssapi + krb5 for the peer's Kerberos; Debian's
#                             postgresql for the store's tests on PostgreSQL, scripts/postgres.sh)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
. "$here/env.sh"
want_test=0
[ "${1:-}" = "--test" ] && want_test=1
mkdir -p "$PSGATE_TOOLS"
log() { printf '[setup] %s\n' "$*" >&2; }
# Installs the Debian packages named that are not installed yet (one apt-get run; nothing when all are there).
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The relay links the system's GSSAPI (MIT krb5, for Kerberos from a ticket cache): its headers, and libclang for the
# bindings the libgssapi crate generates at build time.
apt_install libkrb5-dev clang

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! command -v wasm-opt >/dev/null || [ "$(wasm-opt --version 2>/dev/null | grep -o 'version_[0-9]*')" != "version_$BINARYEN_VERSION" ]; then
  log "installing wasm-opt (npm binaryen@$BINARYEN_VERSION)"
  npm install --silent --no-audit --no-fund --prefix "$PSGATE_TOOLS/binaryen-$BINARYEN_VERSION" "binaryen@$BINARYEN_VERSION"
fi

if [ ! -x "$PSGATE_TOOLS/wasm-bindgen-$WASM_BINDGEN_VERSION/bin/wasm-bindgen" ]; then
  log "building wasm-bindgen-cli $WASM_BINDGEN_VERSION (about 6 minutes on 2 cores)"
  # --locked fails: its lockfile pins a webpki-roots version the registry does not serve.
  cargo install --quiet wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$PSGATE_TOOLS/wasm-bindgen-$WASM_BINDGEN_VERSION"
fi

if [ ! -x "$PSGATE_TOOLS/trunk-$TRUNK_VERSION/bin/trunk" ]; then
  log "building trunk $TRUNK_VERSION (about 11 minutes on 2 cores)"
  cargo install --quiet --locked trunk --version "$TRUNK_VERSION" --root "$PSGATE_TOOLS/trunk-$TRUNK_VERSION"
fi

# psrpcore's server role is `psgate demo`'s built-in target where PowerShell is not installed (tests/peers).
if [ ! -x "$PSGATE_PYTHON" ]; then
  log "creating the Python environment $PSGATE_VENV"
  python3 -m venv "$PSGATE_VENV"
fi
if ! "$PSGATE_PYTHON" -c "import psrpcore, sys, importlib.metadata as m; sys.exit(m.version('psrpcore') != '$PSRPCORE_VERSION')" 2>/dev/null; then
  log "installing psrpcore $PSRPCORE_VERSION"
  "$PSGATE_PYTHON" -m pip install --quiet --disable-pip-version-check "psrpcore==$PSRPCORE_VERSION"
fi

if [ "$want_test" = 1 ]; then
  # krb5-kdc (krb5kdc, kdb5_util), krb5-admin-server (kadmin.local), krb5-user (kinit): tests/peers/kdc.py's realm.
  apt_install chromium chromium-driver openssh-server krb5-kdc krb5-admin-server krb5-user
  # PostgreSQL: the store's tests on its second engine (scripts/postgres.sh runs a throwaway cluster).
  apt_install postgresql
  # nginx: the documented deployment's balancer (deploy/nginx.conf) in front of test relays (tests/tests/deploy.rs).
  apt_install nginx-light
  # For tests/psrpcore (the CLIXML interop tests): the test runner and the YAML reader for the recorded traffic.
  if ! "$PSGATE_PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('pytest') != '$PYTEST_VERSION' or m.version('PyYAML') != '$PYYAML_VERSION')" 2>/dev/null; then
    log "installing pytest $PYTEST_VERSION and PyYAML $PYYAML_VERSION"
    "$PSGATE_PYTHON" -m pip install --quiet --disable-pip-version-check "pytest==$PYTEST_VERSION" "PyYAML==$PYYAML_VERSION"
  fi
  # For tests/peers/test_winrm_peer.py: pypsrp's WinRM client, and pyspnego (the WS-Management peer's NTLM acceptor and
  # message encryption). Same venv as psrpcore: they do not conflict (checked with pip check).
  if ! "$PSGATE_PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('pypsrp') != '$PYPSRP_VERSION' or m.version('pyspnego') != '$PYSPNEGO_VERSION')" 2>/dev/null; then
    log "installing pypsrp $PYPSRP_VERSION and pyspnego $PYSPNEGO_VERSION"
    "$PSGATE_PYTHON" -m pip install --quiet --disable-pip-version-check "pypsrp==$PYPSRP_VERSION" "pyspnego==$PYSPNEGO_VERSION"
    "$PSGATE_PYTHON" -m pip check --disable-pip-version-check >/dev/null
  fi
  # For the peer's Kerberos acceptor and pypsrp's Kerberos (pyspnego[kerberos]): python-gssapi and krb5, built from
  # source against libkrb5-dev (about 2 minutes the first time).
  GSSAPI_VERSION=1.12.0
  PYKRB5_VERSION=0.10.0
  if ! "$PSGATE_PYTHON" -c "import importlib.metadata as m, sys; sys.exit(m.version('gssapi') != '$GSSAPI_VERSION' or m.version('krb5') != '$PYKRB5_VERSION')" 2>/dev/null; then
    log "installing python-gssapi $GSSAPI_VERSION and krb5 $PYKRB5_VERSION"
    "$PSGATE_PYTHON" -m pip install --quiet --disable-pip-version-check "gssapi==$GSSAPI_VERSION" "krb5==$PYKRB5_VERSION"
    "$PSGATE_PYTHON" -m pip check --disable-pip-version-check >/dev/null
  fi
  # For tests/peers (the PSRP test host behind a real sshd): psrpcore for /usr/bin/python3 in a folder the sshd test
  # user can read (a venv under /root is out of its reach), and devious-pypsrp with asyncssh in a venv of its own.
  if ! PYTHONPATH="$PSGATE_PEER_SITE" PYTHONNOUSERSITE=1 /usr/bin/python3 -c "import psrpcore, sys, importlib.metadata as m; sys.exit(m.version('psrpcore') != '$PSRPCORE_VERSION')" 2>/dev/null; then
    log "installing psrpcore $PSRPCORE_VERSION for /usr/bin/python3 in $PSGATE_PEER_SITE"
    rm -rf "$PSGATE_PEER_SITE.tmp"
    "$PSGATE_PYTHON" -m pip install --quiet --disable-pip-version-check --no-compile --target "$PSGATE_PEER_SITE.tmp" "psrpcore==$PSRPCORE_VERSION"
    rm -rf "$PSGATE_PEER_SITE" && mv "$PSGATE_PEER_SITE.tmp" "$PSGATE_PEER_SITE" && chmod -R a+rX "$PSGATE_PEER_SITE"
  fi
  if ! "$PSGATE_PYPSRP_VENV/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('devious-pypsrp') != '$DEVIOUS_PYPSRP_VERSION' or m.version('asyncssh') != '$ASYNCSSH_VERSION')" 2>/dev/null; then
    log "installing devious-pypsrp $DEVIOUS_PYPSRP_VERSION and asyncssh $ASYNCSSH_VERSION in $PSGATE_PYPSRP_VENV"
    python3 -m venv "$PSGATE_PYPSRP_VENV"
    "$PSGATE_PYPSRP_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "devious-pypsrp[ssh]==$DEVIOUS_PYPSRP_VERSION" "asyncssh==$ASYNCSSH_VERSION"
  fi
fi
log "tools ready in $PSGATE_TOOLS"
