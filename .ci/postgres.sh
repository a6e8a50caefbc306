# PostgreSQL for the tests, sourced by .ci/run (bash; also runnable alone: `bash .ci/postgres.sh`).
#
# unlearnkit_postgres: install PostgreSQL from Debian where it is missing (nothing is
# downloaded when it is installed already), start the newest installed major version's
# "main" cluster (creating it where missing), make sure the role and database of the
# tests exist (role unlearnkit, password unlearnkit, CREATEDB: each test module creates
# and drops its own database, see tests/service_pg.py) and export
# UNLEARNKIT_TEST_PG_URL=postgresql+psycopg://unlearnkit:unlearnkit@127.0.0.1:<port>/unlearnkit_test.
# Idempotent: run it twice and the second run changes nothing. Needs root (CI runs as
# root) or passwordless sudo.

unlearnkit_postgres() {
    local role=${UNLEARNKIT_PG_ROLE:-unlearnkit} password=${UNLEARNKIT_PG_PASSWORD:-unlearnkit}
    local db=${UNLEARNKIT_PG_DB:-unlearnkit_test} sudo="" version port status i
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || { echo "postgres.sh: needs root or sudo" >&2; return 1; }
        sudo="sudo -n"
    fi
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
        echo "postgres.sh: installing PostgreSQL (apt-get)"
        $sudo apt-get update -q
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
    fi
    version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
    [ -x "/usr/lib/postgresql/$version/bin/postgres" ] || { echo "postgres.sh: no PostgreSQL server" >&2; return 1; }
    if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {found = 1} END {exit !found}'; then
        $sudo pg_createcluster "$version" main
    fi
    status=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}')
    case "$status" in
        online*) ;;
        *) $sudo pg_ctlcluster "$version" main start ;;
    esac
    port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
    for i in $(seq 1 60); do
        pg_isready -q -h 127.0.0.1 -p "$port" && break
        [ "$i" -eq 60 ] && { echo "postgres.sh: PostgreSQL $version on port $port does not answer" >&2; return 1; }
        sleep 0.5
    done
    # as the postgres superuser over its Unix socket (peer authentication)
    _unlearnkit_psql() {
        if [ -n "$sudo" ]; then
            sudo -n -u postgres psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"
        else
            runuser -u postgres -- psql -p "$port" -v ON_ERROR_STOP=1 -qAt "$@"
        fi
    }
    if [ "$(_unlearnkit_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'")" = 1 ]; then
        _unlearnkit_psql -c "ALTER ROLE \"$role\" LOGIN CREATEDB PASSWORD '$password'" || return 1
    else
        _unlearnkit_psql -c "CREATE ROLE \"$role\" LOGIN CREATEDB PASSWORD '$password'" || return 1
    fi
    if [ "$(_unlearnkit_psql -c "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
        _unlearnkit_psql -c "CREATE DATABASE \"$db\" OWNER \"$role\"" || return 1
    fi
    export UNLEARNKIT_TEST_PG_URL="postgresql+psycopg://$role:$password@127.0.0.1:$port/$db"
    # the role can log in over TCP with its password (Debian's pg_hba: scram-sha-256 on 127.0.0.1)
    PGPASSWORD=$password psql -h 127.0.0.1 -p "$port" -U "$role" -d "$db" -qAt -c "SELECT 1" >/dev/null || {
        echo "postgres.sh: role $role cannot log in to $db on 127.0.0.1:$port" >&2
        return 1
    }
    echo "postgres.sh: PostgreSQL $version on 127.0.0.1:$port, UNLEARNKIT_TEST_PG_URL set (database $db)"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced
    set -euo pipefail
    unlearnkit_postgres
    echo "UNLEARNKIT_TEST_PG_URL=$UNLEARNKIT_TEST_PG_URL"
fi
