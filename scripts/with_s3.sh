#!/usr/bin/env bash
# Runs a command beside a throw-away S3-compatible server: moto's (a real HTTP server
# speaking the S3 API, in memory), installed with pip as `moto[server]` when no
# `moto_server` is found. Starts it on a free loopback port, creates nothing in it (each
# test makes its own bucket), exports HUATU_TEST_S3_ENDPOINT and AWS_* test credentials
# for that endpoint, runs "$@", then stops the server, whatever the command's outcome.
# Its exit status is the command's.
#
#   scripts/with_s3.sh cargo test --release -p huatu-server s3
#   CI=true scripts/with_postgres.sh scripts/with_s3.sh cargo test --release --workspace
set -euo pipefail

MOTO=$(command -v moto_server || true)
if [ -z "$MOTO" ]; then
    echo "with_s3: installing moto[server] with pip" >&2
    python3 -m pip install --quiet 'moto[server]' >&2
    hash -r
    MOTO=$(command -v moto_server || true)
    if [ -z "$MOTO" ]; then
        echo "with_s3: pip installed moto but no moto_server is on PATH" >&2
        exit 1
    fi
fi

LOG=$(mktemp /tmp/huatu-s3.XXXXXX.log)
PORT=${HUATU_S3_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
"$MOTO" -H 127.0.0.1 -p "$PORT" >"$LOG" 2>&1 &
SERVER=$!

stop() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -f "$LOG"
}
trap stop EXIT

# Up once it answers HTTP (moto takes a second or two to import).
for _ in $(seq 1 100); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/', timeout=1)" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER" 2>/dev/null; then
        echo "with_s3: moto_server stopped at start:" >&2
        cat "$LOG" >&2
        exit 1
    fi
    sleep 0.2
done

export HUATU_TEST_S3_ENDPOINT="http://127.0.0.1:$PORT"
export AWS_ENDPOINT_URL="$HUATU_TEST_S3_ENDPOINT"
export AWS_ACCESS_KEY_ID=huatu-test
export AWS_SECRET_ACCESS_KEY=huatu-test-secret
export AWS_REGION=us-east-1
export AWS_ALLOW_HTTP=true
MOTO_VERSION=$(python3 -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || echo "?")
echo "with_s3: moto $MOTO_VERSION S3 on $HUATU_TEST_S3_ENDPOINT" >&2

set +e
"$@"
status=$?
set -e
exit $status
