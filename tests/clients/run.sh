#!/usr/bin/env bash
# Starts a local faceid server with the tiny test models and drives it with the official
# fal clients (Python fal-client, JS @fal-ai/client). Usage: bash tests/clients/run.sh
# Env: FACEID_BIN (default target/debug/faceid), PYTHON (default python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
bin="${FACEID_BIN:-target/debug/faceid}"
[[ -x "$bin" ]] || { echo "no server binary at $bin (build it or set FACEID_BIN)" >&2; exit 1; }
command -v openssl >/dev/null || { echo "openssl is needed to make the test certificate" >&2; exit 1; }
started=$SECONDS

# Client dependencies, pinned; installed once.
venv="$here/.venv-clients"
if [[ ! -f "$venv/.installed" || "$here/requirements.txt" -nt "$venv/.installed" ]]; then
  "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
  touch "$venv/.installed"
fi
if [[ ! -d "$here/node_modules" || "$here/package-lock.json" -nt "$here/node_modules" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

tmp="$(mktemp -d)"
server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Self-signed certificate for 127.0.0.1 and localhost (the Python client speaks only https).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -addext "keyUsage=critical,digitalSignature,keyCertSign" -addext "extendedKeyUsage=serverAuth" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
mkdir -p "$tmp/hf" "$tmp/files"
HF_HUB_OFFLINE=1 HF_HOME="$tmp/hf" "$bin" serve --bind "127.0.0.1:$port" \
  --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --files-dir "$tmp/files" \
  --base-model tests/data/sd/tiny-a --ip-adapter tests/data/faceid/ip-adapter-faceid_tiny.bin \
  --recognizer tests/data/face/arcface_r50_bn.onnx --api-key testkey \
  --allow-fetch-host 127.0.0.1 2>"$tmp/server.log" &  # 127.0.0.1: the Python test's webhook receiver
server_pid=$!
for _ in $(seq 600); do
  grep -q "^serving " "$tmp/server.log" && break
  kill -0 "$server_pid" 2>/dev/null || { echo "server exited:" >&2; cat "$tmp/server.log" >&2; exit 1; }
  sleep 0.2
done
grep -q "^serving " "$tmp/server.log" || { echo "server not ready after 120 s" >&2; cat "$tmp/server.log" >&2; exit 1; }
echo "server ready on https://127.0.0.1:$port ($((SECONDS - started)) s)"

status=0
run_suite() { # name, command...
  local name=$1 t=$SECONDS rc=0
  shift
  timeout --foreground 900 "$@" 2>&1 | tee "$tmp/$name.out" || rc=$?  # 124: the suite hung
  echo "$name: exit $rc in $((SECONDS - t)) s" >>"$tmp/summary"
  [[ $rc -eq 0 ]] || status=1
}
run_suite python env FAL_KEY=testkey FAL_RUN_HOST="127.0.0.1:$port" \
  FAL_QUEUE_RUN_HOST="127.0.0.1:$port/queue" SSL_CERT_FILE="$tmp/cert.pem" \
  "$venv/bin/python" "$here/test_python_client.py"
run_suite js env FAL_KEY=testkey FACEID_URL="https://127.0.0.1:$port" \
  NODE_EXTRA_CA_CERTS="$tmp/cert.pem" node "$here/test_js_client.mjs"

echo
echo "== summary =="
grep -h -E "^(PASS|FAIL) " "$tmp/python.out" "$tmp/js.out" | cut -c1-300 || true
cat "$tmp/summary"
echo "total: $((SECONDS - started)) s, $([[ $status -eq 0 ]] && echo OK || echo FAILED)"
if [[ $status -ne 0 ]]; then
  echo "--- server log (tail) ---"
  tail -n 40 "$tmp/server.log"
fi
exit $status
