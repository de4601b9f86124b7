#!/usr/bin/env bash
# Installs and starts what `make run` / `make test` need, and nothing that is already there.
#   scripts/bootstrap.sh venv   the virtualenv with Wharf and its pinned dependencies
#   scripts/bootstrap.sh run    + redis-server (for the private Redis of `wharf run`)
#   scripts/bootstrap.sh test   + skopeo, docker-registry, chromium, PostgreSQL, MariaDB, Redis (all running),
#                               openssh-server, supervisor, nginx, haproxy, python3-venv (for ansible/ tests),
#                               slapd, ldap-utils (a private OpenLDAP for the LDAP auth tests),
#                               the SSO peers' venv (a CAS server and an OIDC provider, from PyPI)
# Works as root and as a user with sudo, with or without systemd (containers and chroots install
# services without starting them). Quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-venv}"
VENV=.venv
PYTHON="${PYTHON:-python3}"
# A non-root login shell on Debian has no sbin in PATH (start-stop-daemon, runuser live there).
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

say() { printf '==> %s\n' "$*" >&2; }

is_root() { [ "$(id -u)" -eq 0 ]; }

need_sudo() {
  command -v sudo >/dev/null || { say "not root and no sudo: run this as root, or install sudo"; return 1; }
}

# as_root CMD...: run CMD as root: directly when we are root, else through sudo.
as_root() {
  if is_root; then "$@"; else need_sudo && sudo "$@"; fi
}

# as_user USER CMD...: run CMD as USER: runuser for root (a minimal system may have no sudo), sudo
# otherwise. From / because USER may not be able to read the current directory.
as_user() {
  local user="$1"; shift
  if [ "$(id -un)" = "$user" ]; then
    (cd / && "$@")
  elif is_root; then
    (cd / && runuser -u "$user" -- "$@")
  else
    need_sudo && (cd / && sudo -u "$user" -- "$@")
  fi
}

# With systemd running, services are its business; without it (containers, chroots) we start them.
has_systemd() { [ -d /run/systemd/system ]; }

# wait_for WHAT LOG CMD...: poll CMD for up to 30 s; on failure name (and show the end of) LOG.
wait_for() {
  local what="$1" log="$2"; shift 2
  for _ in $(seq 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "$what did not become ready within 30s; its log: $log"
  as_root tail -n 20 "$log" >&2 2>/dev/null || true
  return 1
}

ensure_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/pip" install -q --upgrade pip
  fi
  # Reinstall only when pyproject.toml changed since the last install.
  if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    say "installing Wharf and its pinned dependencies into $VENV"
    "$VENV/bin/pip" install -q -e '.[all,dev]' >"$VENV/install.log" 2>&1 \
      || { cat "$VENV/install.log" >&2; say "pip install failed (log: $VENV/install.log)"; return 1; }
    touch "$VENV/.installed"
  fi
}

# apt_get LOG ARGS...: apt-get as root, non-interactive, its output appended to LOG.
apt_get() {
  local log="$1"; shift
  as_root env DEBIAN_FRONTEND=noninteractive apt-get -y -q "$@" >>"$log" 2>&1
}

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  local log; log="$(mktemp -t wharf-apt-XXXXXX.log)"
  # A fresh machine has no package lists yet, and stale ones fail the first try: update, retry.
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! apt_get "$log" install "${missing[@]}"; then
    apt_get "$log" update && apt_get "$log" install "${missing[@]}" \
      || { tail -n 20 "$log" >&2; say "apt-get failed (log: $log)"; return 1; }
  fi
  rm -f "$log"
}

# apt_install_stopped PKG...: install packages whose daemons the tests start themselves (sshd,
# nginx, haproxy, supervisord), without letting the packages start them on their default ports:
# a policy-rc.d that refuses every start, for the time of the install, unless one is in place.
apt_install_stopped() {
  local policy=/usr/sbin/policy-rc.d
  if [ -e "$policy" ]; then apt_install "$@"; return; fi
  as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
  local status=0
  apt_install "$@" || status=$?
  as_root rm -f "$policy"
  return $status
}

local_url() { case "$1" in *127.0.0.1*|*localhost*) return 0;; *) return 1;; esac; }

redis_alive() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
  local url="${WHARF_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
  local_url "$url" || return 0
  redis_alive && return 0
  say "starting redis-server on 127.0.0.1:6379"
  local log=/var/log/redis/redis-server.log
  if has_systemd; then
    as_root systemctl start redis-server
  else
    # As the packaged redis user, not root: a server has no business running as root.
    as_user redis redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
      --appendonly no --dir /var/lib/redis --logfile "$log"
  fi
  wait_for redis-server "$log" redis_alive
}

pg_admin() { as_user postgres psql -X -q -At "$@"; }

ensure_postgres() {
  local url="${WHARF_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/test}"
  local_url "$url" || return 0
  psql "$url" -XAtc 'select 1' >/dev/null 2>&1 && return 0

  # The Debian cluster on port 5432; a new `main` one when the package made none.
  local version cluster
  read -r version cluster < <(pg_lsclusters -h | awk '$3 == 5432 {print $1, $2}' | sort -V | tail -1) || true
  if [ -z "${version:-}" ]; then
    if [ -n "$(pg_lsclusters -h)" ]; then
      say "no PostgreSQL cluster uses port 5432 (see pg_lsclusters)"; return 1
    fi
    version="$(ls /usr/lib/postgresql | sort -V | tail -1)"
    cluster=main
    say "creating PostgreSQL $version cluster $cluster"
    as_root pg_createcluster --port 5432 "$version" "$cluster" >/dev/null
  fi
  local log="/var/log/postgresql/postgresql-$version-$cluster.log"

  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    say "starting PostgreSQL $version/$cluster"
    if has_systemd; then
      as_root systemctl start "postgresql@$version-$cluster"
    else
      as_root pg_ctlcluster --skip-systemctl-redirect "$version" "$cluster" start \
        || { say "PostgreSQL did not start; its log: $log"; return 1; }
    fi
    wait_for PostgreSQL "$log" pg_isready -h 127.0.0.1 -p 5432 -q
  fi

  # A fresh Debian cluster asks for passwords over TCP: trust loopback (a test box).
  local hba="/etc/postgresql/$version/$cluster/pg_hba.conf"
  if ! as_root grep -q "wharf-test" "$hba"; then
    say "allowing trusted loopback connections to PostgreSQL (test machine)"
    as_root sed -i '1i host all all 127.0.0.1/32 trust # wharf-test\nhost all all ::1/128 trust # wharf-test' "$hba"
    pg_admin -c 'select pg_reload_conf()' >/dev/null
    wait_for "PostgreSQL (trusting loopback)" "$log" psql "${url%/*}/postgres" -XAtc 'select 1'
  fi
  local db="${url##*/}"
  if [ "$(pg_admin -c "select 1 from pg_database where datname = '$db'")" != 1 ]; then
    as_user postgres createdb "$db"
  fi
  psql "$url" -XAtc 'select 1' >/dev/null || { say "cannot connect to $url"; return 1; }
}

mariadb_alive() { mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 || mysqladmin ping >/dev/null 2>&1; }

ensure_mariadb() {
  local url="${WHARF_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
  local_url "$url" || return 0
  if ! mariadb_alive; then
    say "starting MariaDB"
    local log=/var/log/mysql/error.log
    if has_systemd; then
      log="journalctl -u mariadb"
      as_root systemctl start mariadb
    else
      as_root test -d /var/lib/mysql/mysql \
        || as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
      # mariadbd refuses to run as root: run it as mysql, with its socket directory mysql's.
      as_root install -d -o mysql -g mysql -m 755 /run/mysqld
      [ -d /var/log/mysql ] || as_root install -d -o mysql -g adm -m 2750 /var/log/mysql
      # Its stderr is its error log (Debian sets no log_error), early start-up failures included.
      as_user mysql start-stop-daemon --start --quiet --oknodo --background --output "$log" \
        --exec /usr/sbin/mariadbd
    fi
    wait_for MariaDB "$log" mariadb_alive
  fi
  if ! mysql -h 127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
    # A fresh Debian MariaDB: root logs in over the socket only; let tests in over TCP.
    say "allowing root over TCP without a password (test machine)"
    as_root mysql -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
  fi
  local db="${url##*/}"
  mysql -h 127.0.0.1 -uroot -e "CREATE DATABASE IF NOT EXISTS \`$db\`" >/dev/null
}

# The CAS server and OIDC provider the SSO tests start run in a venv of their own, pinned in
# tests/peers/requirements-sso.txt; made here so that no test waits for pip (tests make it too).
ensure_peers() {
  "$VENV/bin/python" -m tests.support.peers >/dev/null \
    || { say "the SSO peers' venv could not be made (log under var/peers/)"; return 1; }
}

case "$MODE" in
  venv) ensure_venv ;;
  run)
    command -v redis-server >/dev/null || apt_install redis-server
    ensure_venv ;;
  test)
    apt_install skopeo docker-registry wrk chromium postgresql mariadb-server redis-server
    # the Ansible rollout's tests: hosts over SSH, services under supervisor, fronts, venvs
    apt_install_stopped openssh-server supervisor nginx haproxy python3-venv
    # the LDAP auth tests start their own slapd; the package's own must neither start nor ask
    # (its debconf questions are answered by the defaults under DEBIAN_FRONTEND=noninteractive)
    apt_install_stopped slapd ldap-utils
    ensure_venv
    ensure_peers
    ensure_redis
    ensure_postgres
    ensure_mariadb ;;
  *) echo "usage: $0 venv|run|test" >&2; exit 2 ;;
esac
