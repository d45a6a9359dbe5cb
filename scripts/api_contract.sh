#!/usr/bin/env bash
# The API keeps to its OpenAPI document: schemathesis (PyPI) generates requests from
# web/openapi.json for a minute against a real server (a tiny library of the fixture photos,
# signed in with a read-only token, so that it cannot revoke its own credentials) and checks
# every answer: documented status codes and content types, responses matching their schemas,
# no server errors. `positive_data_acceptance` is left out: the server rightly refuses some
# schema-valid requests for what a schema cannot say (a picture that does not decode, a composed
# query with nothing to look for, min_prob on a model without calibrated scores).
# Run by scripts/test.sh after `cargo test` (which builds target/debug/imgsearch).
set -euo pipefail
cd "$(dirname "$0")/.."
SCHEMATHESIS_VERSION=4.32.5
# Installed into target/ (not the system's Python, which Debian marks externally managed).
tools="$PWD/target/schemathesis-$SCHEMATHESIS_VERSION"
if [ ! -d "$tools/schemathesis" ]; then
    python3 -m pip install --quiet --target "$tools" "schemathesis==$SCHEMATHESIS_VERSION"
fi
export PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}"
binary=target/debug/imgsearch
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT
mkdir "$work/photos"
cp tests/fixtures/images/*.jpg tests/fixtures/images/*.png "$work/photos/"
"$binary" --data-dir "$work/data" index "$work/photos" --model tests/fixtures/models/tiny-clip-b32-quickgelu --quiet
token=$("$binary" --data-dir "$work/data" token create --read-only --name schemathesis | tail -1)
"$binary" --data-dir "$work/data" serve --addr 127.0.0.1:0 >"$work/banner" 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do grep -q "serving on" "$work/banner" && break; sleep 0.1; done
url=$(sed -n 's/^imgsearch serving on \(http[^ ]*\)\/$/\1/p' "$work/banner")
[ -n "$url" ] || { echo "the server did not start:" >&2; cat "$work/server.log" >&2; exit 1; }
python3 -m schemathesis.cli run "$url/api/openapi.json" \
    --checks all --exclude-checks positive_data_acceptance \
    -H "Authorization: Bearer $token" \
    --max-time 60 --generation-deterministic
