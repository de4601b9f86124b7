#!/usr/bin/env bash
# Installs and starts what `make run` / `make test` need, and nothing that is already there.
#   scripts/bootstrap.sh venv   the virtualenv with Wharf and its pinned dependencies
#   scripts/bootstrap.sh run    + redis-server (for the private Redis of `wharf run`)
#   scripts/bootstrap.sh test   + skopeo, docker-registry, PostgreSQL, MariaDB, Redis, all running
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${1:-venv}"
VENV=.venv
PYTHON="${PYTHON:-python3}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

say() { printf '==> %s\n' "$*" >&2; }

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

apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; }
}

local_url() { case "$1" in *127.0.0.1*|*localhost*) return 0;; *) return 1;; esac; }

ensure_redis() {
  local url="${WHARF_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}"
  local_url "$url" || return 0
  redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0
  say "starting redis-server on 127.0.0.1:6379"
  $SUDO mkdir -p /var/lib/redis
  $SUDO redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && return 0; sleep 0.2; done
  say "redis-server did not start"; return 1
}

ensure_postgres() {
  local url="${WHARF_TEST_PG_URL:-postgresql://postgres@127.0.0.1:5432/test}"
  local_url "$url" || return 0
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
    say "starting PostgreSQL $version"
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
  fi
  if ! psql "$url" -Atc 'select 1' >/dev/null 2>&1; then
    # A fresh Debian cluster: trust loopback connections (a test box) and create the test database.
    local version; version="$(ls /etc/postgresql | sort -V | tail -1)"
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "wharf-test" "$hba"; then
      say "allowing trusted loopback connections to PostgreSQL (test machine)"
      $SUDO sed -i '1i host all all 127.0.0.1/32 trust # wharf-test\nhost all all ::1/128 trust # wharf-test' "$hba"
      $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main reload
      sleep 1
    fi
    local db="${url##*/}"
    $SUDO -u postgres psql -Atc "select 1 from pg_database where datname='$db'" 2>/dev/null | grep -q 1 \
      || (cd /tmp && $SUDO -u postgres createdb "$db")
  fi
}

ensure_mariadb() {
  local url="${WHARF_TEST_MYSQL_URL:-mysql://root@127.0.0.1:3306/test}"
  local_url "$url" || return 0
  if ! mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && ! mysqladmin ping >/dev/null 2>&1; then
    say "starting MariaDB"
    $SUDO mkdir -p /run/mysqld && $SUDO chown mysql:mysql /run/mysqld
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    for _ in $(seq 100); do mysqladmin ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  if ! mysql -h 127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
    # A fresh Debian MariaDB: root logs in over the socket only; let tests in over TCP.
    say "allowing root over TCP without a password (test machine)"
    $SUDO mysql -e "ALTER USER root@localhost IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('')"
  fi
  local db="${url##*/}"
  mysql -h 127.0.0.1 -uroot -e "CREATE DATABASE IF NOT EXISTS \`$db\`" >/dev/null
}

case "$MODE" in
  venv) ensure_venv ;;
  run)
    command -v redis-server >/dev/null || apt_install redis-server
    ensure_venv ;;
  test)
    apt_install skopeo docker-registry wrk postgresql mariadb-server redis-server
    ensure_venv
    ensure_redis
    ensure_postgres
    ensure_mariadb ;;
  *) echo "usage: $0 venv|run|test" >&2; exit 2 ;;
esac
