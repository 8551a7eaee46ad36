#!/usr/bin/env bash
# Runs a command beside a throw-away PostgreSQL server: installs Debian's server package
# when no `initdb` is found (as root, with apt-get), creates a cluster in a temp directory
# owned by an unprivileged user (PostgreSQL refuses to run as root), starts it on a free
# loopback port, exports HUATU_TEST_DATABASE_URL, runs "$@", then stops the server and
# removes the directory, whatever the command's outcome. Its exit status is the command's.
# With openssl present (and HUATU_PG_TLS not 0) the server also offers TLS with a
# certificate from a throw-away CA, exported as PGSSLROOTCERT, so clients that prefer
# TLS (huatu's default `sslmode=prefer`) use it.
#
#   scripts/with_postgres.sh cargo test --release -p huatu-server
set -euo pipefail

find_bin() {
    local name=$1 dir
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
    for dir in /usr/lib/postgresql/*/bin; do
        if [ -x "$dir/$name" ]; then echo "$dir/$name"; return 0; fi
    done
    return 1
}

if ! find_bin initdb >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "with_postgres: installing Debian's postgresql package" >&2
        apt-get install -y --no-install-recommends postgresql >/dev/null
    else
        echo "with_postgres: no initdb found and no apt-get as root to install PostgreSQL" >&2
        exit 1
    fi
fi
INITDB=$(find_bin initdb)
PG_CTL=$(find_bin pg_ctl)

# The server's user: ourselves when not root, else `postgres` (Debian's package makes it)
# or `nobody`.
as_user() { "$@"; }
OWNER=$(id -un)
if [ "$(id -u)" = 0 ]; then
    OWNER=nobody
    if id postgres >/dev/null 2>&1; then OWNER=postgres; fi
    as_user() { runuser -u "$OWNER" -- "$@"; }
fi

DIR=$(mktemp -d /tmp/huatu-pg.XXXXXX)
chmod 755 "$DIR"
chown "$OWNER" "$DIR"
PORT=${HUATU_PG_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

stop() {
    as_user "$PG_CTL" -D "$DIR/cluster" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
}
trap stop EXIT

as_user "$INITDB" -D "$DIR/cluster" -U huatu --auth=trust --no-sync -E UTF8 >"$DIR/initdb.log" 2>&1 \
    || { cat "$DIR/initdb.log" >&2; exit 1; }
TLS_OPTIONS=""
if [ "${HUATU_PG_TLS:-1}" != 0 ] && command -v openssl >/dev/null; then
    mkdir "$DIR/tls"
    (
        cd "$DIR/tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=huatu test CA" \
            -keyout ca.key -out ca.crt 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
            -keyout server.key -out server.csr 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >ext.cnf
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -extfile ext.cnf -out server.crt 2>/dev/null
        chmod 600 server.key
        chown "$OWNER" server.key server.crt
    )
    TLS_OPTIONS="-c ssl=on -c ssl_cert_file=$DIR/tls/server.crt -c ssl_key_file=$DIR/tls/server.key"
    export PGSSLROOTCERT="$DIR/tls/ca.crt"
fi

# Loopback only; the socket in the temp directory; fsync off: a test cluster is thrown away.
as_user "$PG_CTL" -D "$DIR/cluster" -l "$DIR/server.log" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200 $TLS_OPTIONS" >/dev/null \
    || { cat "$DIR/server.log" >&2; exit 1; }
export HUATU_TEST_DATABASE_URL="postgres://huatu@127.0.0.1:$PORT/postgres"
echo "with_postgres: PostgreSQL on 127.0.0.1:$PORT ($HUATU_TEST_DATABASE_URL)${PGSSLROOTCERT:+, TLS offered}" >&2

set +e
"$@"
status=$?
set -e
exit $status
