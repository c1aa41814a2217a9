#!/usr/bin/env bash
# Make sure the services the test suite needs are on this machine (Debian 12): Chromium for the
# browser tests, espeak-ng (speech the transcription tests synthesise) and a PostgreSQL server on 127.0.0.1:5432 with the role `emofusion` (password
# `emofusion`, CREATEDB) and its database `emofusion_test`. Installs what is missing with apt-get
# (as root, or through sudo), starts or creates a cluster, and is quick when all is in place.
#
# The last line of stdout is the SQLAlchemy URL of the test database; everything else goes to
# stderr, so a Makefile can take it with `$(scripts/ensure-test-services.sh | tail -1)`.
set -euo pipefail

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_ROLE=emofusion
readonly PG_PASSWORD=emofusion
readonly PG_DB=emofusion_test
readonly PG_URL="postgresql+psycopg://${PG_ROLE}:${PG_PASSWORD}@${PG_HOST}:${PG_PORT}/${PG_DB}"

# Keep stdout (fd 3) for the URL alone; all other output, ours and the tools', goes to stderr.
exec 3>&1 1>&2

log() { echo "ensure-test-services: $*" >&2; }
die() { log "error: $*"; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root or sudo to run: $*"
    fi
}

# Run a command as the postgres superuser (peer authentication on the local socket).
as_postgres() {
    if [ "$(id -un)" = postgres ]; then
        (cd / && "$@")
    elif [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    elif command -v sudo >/dev/null 2>&1; then
        (cd / && sudo -u postgres -- "$@")
    else
        die "need root or sudo to run as postgres: $*"
    fi
}

# apt-get install the packages; refresh the package lists only when the first try fails.
apt_install() {
    local install=(env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@")
    log "installing $* with apt-get"
    as_root "${install[@]}" && return 0
    log "apt-get install failed; running apt-get update and trying again"
    as_root apt-get update || die "apt-get update failed"
    as_root "${install[@]}" || die "apt-get could not install $*"
}

# The newest installed PostgreSQL server version (e.g. 15), or nothing.
server_version() {
    local bin
    bin=$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | sort -V | tail -n 1)
    [ -x "$bin" ] || return 0
    bin=${bin#/usr/lib/postgresql/}
    echo "${bin%%/*}"
}

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

ensure_chromium() {
    [ -x /usr/bin/chromium ] && return 0
    apt_install chromium
    [ -x /usr/bin/chromium ] || die "chromium was installed but /usr/bin/chromium is missing"
}

ensure_espeak() {
    command -v espeak-ng >/dev/null 2>&1 && return 0
    apt_install espeak-ng
    command -v espeak-ng >/dev/null 2>&1 || die "espeak-ng was installed but is not on PATH"
}

ensure_postgres_installed() {
    if command -v pg_ctlcluster >/dev/null 2>&1 && command -v pg_isready >/dev/null 2>&1 \
        && [ -n "$(server_version)" ]; then
        return 0
    fi
    apt_install postgresql
    [ -n "$(server_version)" ] || die "the postgresql package is installed but no server binary was found"
}

# Start the cluster that owns port 5432, or create one there when there is none.
ensure_postgres_running() {
    pg_ready && return 0
    local version name
    # pg_lsclusters --no-header: version cluster port status owner datadir logfile
    read -r version name < <(pg_lsclusters --no-header | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }') || true
    if [ -z "${version:-}" ]; then
        version=$(server_version)
        name=main
        if pg_lsclusters --no-header | awk -v v="$version" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
            name=emofusion
        fi
        log "creating PostgreSQL cluster $version/$name on port $PG_PORT"
        as_root pg_createcluster --port "$PG_PORT" "$version" "$name" || die "pg_createcluster $version $name failed"
    fi
    log "starting PostgreSQL cluster $version/$name"
    as_root pg_ctlcluster "$version" "$name" start || die "could not start PostgreSQL cluster $version/$name"
    local _
    for _ in $(seq 1 30); do
        pg_ready && return 0
        sleep 1
    done
    die "PostgreSQL cluster $version/$name does not accept connections on $PG_HOST:$PG_PORT"
}

# Whether the role logs in to its database over TCP with its password, owns it and may create databases.
role_ready() {
    [ "$(PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -At -h "$PG_HOST" -p "$PG_PORT" -U "$PG_ROLE" \
        -d "$PG_DB" -c "SELECT r.rolcreatedb AND d.datdba = r.oid FROM pg_roles r, pg_database d
                         WHERE r.rolname = current_user AND d.datname = current_database()" 2>/dev/null)" = t ]
}

# The role and its database, created when missing and brought to the expected settings.
ensure_role_and_database() {
    role_ready && return 0
    log "setting up role $PG_ROLE and database $PG_DB"
    as_postgres psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres <<SQL || die "could not create role $PG_ROLE / database $PG_DB"
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
        CREATE ROLE $PG_ROLE;
    END IF;
END \$\$;
ALTER ROLE $PG_ROLE WITH LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
SELECT 'CREATE DATABASE $PG_DB OWNER $PG_ROLE'
    WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_DB') \gexec
ALTER DATABASE $PG_DB OWNER TO $PG_ROLE;
SQL
    role_ready || die "cannot log in to $PG_DB as $PG_ROLE on $PG_HOST:$PG_PORT with its password (check pg_hba.conf)"
}

# fd 3 stays closed for everything but the URL: a daemon started here (the PostgreSQL server)
# would otherwise inherit it, and `url=$(ensure-test-services.sh)` would wait for it forever.
{
    ensure_chromium
    ensure_espeak
    ensure_postgres_installed
    ensure_postgres_running
    ensure_role_and_database
} 3>&-
echo "$PG_URL" >&3
