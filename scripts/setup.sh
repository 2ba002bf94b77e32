#!/usr/bin/env bash
# Prepare a fresh Debian machine (Python >= 3.11) for Sekimori: system packages, a venv, the
# project with its broker, agent and test dependencies. Idempotent; quiet when nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

"$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Sekimori needs Python 3.11 or newer")'

need_apt=()
"$PY" -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
command -v curl >/dev/null || need_apt+=(curl)
# OpenLDAP slapd: the demo municipality's directory (broker/demo_directory.py) and the LDAP
# tests (tests/peers/slapd.py); Debian puts it in /usr/sbin
[ -x /usr/sbin/slapd ] || command -v slapd >/dev/null || need_apt+=(slapd)
if [ "${SEKIMORI_TEST_PEERS:-0}" = 1 ]; then
  command -v openssl >/dev/null || need_apt+=(openssl)
  command -v ldapsearch >/dev/null || need_apt+=(ldap-utils)
  # Samba AD DC for the Active Directory tests (tests/peers/samba_ad.py; they need root)
  if [ "$(id -u)" = 0 ]; then
    command -v samba >/dev/null || need_apt+=(samba samba-ad-dc samba-ad-provision samba-dsdb-modules winbind ldb-tools)
  fi
  # node + npm for the OpenID Connect provider (npm oidc-provider, tests/peers/oidc); Chromium
  command -v node >/dev/null || need_apt+=(nodejs)
  command -v npm >/dev/null || need_apt+=(npm)
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  # dig: an independent DNS client for the agent's split-DNS stub (tests/integration/test_dns_stub.py)
  command -v dig >/dev/null || need_apt+=(bind9-dnsutils)
  # ClamAV's clamd with a custom signature database (tests/peers/clamav.py); poppler's pdfinfo and
  # pdftotext check the sanitised PDFs independently
  command -v clamd >/dev/null || [ -x /usr/sbin/clamd ] || need_apt+=(clamav clamav-daemon)
  command -v pdfinfo >/dev/null || need_apt+=(poppler-utils)
  # nghttpd: an independent HTTP/2 origin for the gateway's HTTP/2 towards origins
  command -v nghttpd >/dev/null || need_apt+=(nghttp2-server)
fi
# python-ldap (the broker's LDAP/AD client) has no wheels: pip builds it against these headers
if [ "${SEKIMORI_TEST_PEERS:-0}" = 1 ] || ! .venv/bin/python -c 'import ldap' 2>/dev/null; then
  [ -f /usr/include/ldap.h ] || need_apt+=(libldap2-dev)
  [ -f /usr/include/sasl/sasl.h ] || need_apt+=(libsasl2-dev)
  command -v gcc >/dev/null || need_apt+=(gcc)
  "$PY" -c 'import sysconfig, os, sys; sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)' \
    || need_apt+=(python3-dev)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "please install: ${need_apt[*]} (e.g. sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.sekimori-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install -q -e '.[dev]' 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c 'import broker, agent, h2, fastapi, sqlalchemy' # fail loudly if the install did not work
  touch "$stamp"
fi
