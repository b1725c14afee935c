# Sourced by the other scripts: where psgate's pinned tools live and how to find them.
# Tools go in versioned folders so another checkout that needs other versions is not clobbered.
if [ -z "${PSGATE_TOOLS:-}" ]; then
  if [ "$(id -u)" = 0 ]; then PSGATE_TOOLS=/opt/psgate-tools; else PSGATE_TOOLS="$HOME/.cache/psgate-tools"; fi
fi
export PSGATE_TOOLS
TRUNK_VERSION=0.21.14
WASM_BINDGEN_VERSION=0.2.130   # must equal the wasm-bindgen crate in Cargo.lock
BINARYEN_VERSION=132
PSRPCORE_VERSION=0.3.1
PYTEST_VERSION=9.2.0
PYYAML_VERSION=6.0.4
# tests/peers: devious-pypsrp (pypsrp's unreleased `psrp` 1.0 client, with SSH over asyncssh) gets its own venv
# because it installs a pypsrp that conflicts; psrpcore for /usr/bin/python3 (the sshd test user's interpreter).
DEVIOUS_PYPSRP_VERSION=1.0.1
ASYNCSSH_VERSION=2.24.1
# tests/peers/test_winrm_peer.py: pypsrp's WinRM client drives the WS-Management test peer (winrm_host.py, whose NTLM
# acceptor is pyspnego's). Both go in $PSGATE_VENV: pypsrp 0.9.1 (package `pypsrp`) does not clash with psrpcore
# (package `psrpcore`); devious-pypsrp's own `pypsrp` stays in its venv.
PYPSRP_VERSION=0.9.1
PYSPNEGO_VERSION=0.12.4
PSGATE_PYPSRP_VENV="$PSGATE_TOOLS/venv-pypsrp"
PSGATE_PEER_SITE="$PSGATE_TOOLS/peer-site-psrpcore-$PSRPCORE_VERSION"
export PATH="$PSGATE_TOOLS/trunk-$TRUNK_VERSION/bin:$PSGATE_TOOLS/wasm-bindgen-$WASM_BINDGEN_VERSION/bin:$PSGATE_TOOLS/binaryen-$BINARYEN_VERSION/node_modules/.bin:$HOME/.cargo/bin:$PATH"
PSGATE_VENV="$PSGATE_TOOLS/venv"
export PSGATE_PYTHON="$PSGATE_VENV/bin/python"
# The project's reference material (`../shared`: recorded Windows traffic, test vectors), beside the repository. A clone
# made elsewhere (CI's clean clone in a temporary folder) finds it beside the repository it was cloned from.
if [ -z "${PSGATE_SHARED:-}" ]; then
  _psgate_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  PSGATE_SHARED="$_psgate_repo/../shared"
  if [ ! -d "$PSGATE_SHARED/fixtures" ]; then
    _psgate_origin="$(git -C "$_psgate_repo" config --get remote.origin.url 2>/dev/null || true)"
    case "$_psgate_origin" in
      file://*) _psgate_origin="${_psgate_origin#file://}" ;;
    esac
    if [ -n "$_psgate_origin" ] && [ -d "$_psgate_origin/../shared/fixtures" ]; then
      PSGATE_SHARED="$(cd "$_psgate_origin/../shared" && pwd)"
    fi
  fi
  unset _psgate_repo _psgate_origin
fi
export PSGATE_SHARED
