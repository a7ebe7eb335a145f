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
worker_pid=""
redis_pid=""
kill_server() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
stop_shared() { # the worker and redis-server of the shared-queue suite
  for pid in "$worker_pid" "$redis_pid"; do
    if [[ -n "$pid" ]]; then
      kill -KILL "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  worker_pid=""
  redis_pid=""
}
stop_server() {
  kill_server
  stop_shared
  rm -rf "$tmp"
}
trap stop_server EXIT
trap 'exit 130' INT TERM

# Self-signed certificate for 127.0.0.1 and localhost (the Python client speaks only https).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=localhost -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -addext "keyUsage=critical,digitalSignature,keyCertSign" -addext "extendedKeyUsage=serverAuth" \
  -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

free_port() {
  "$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# The Python test's webhook receiver listens here; the server may post to this host:port only.
hook_port="$(free_port)"

start_server() { # log name, then the model options of `faceid serve`
  local log="$tmp/$1.log"
  shift
  port="$(free_port)"
  mkdir -p "$tmp/hf" "$tmp/files"
  HF_HUB_OFFLINE=1 HF_HOME="$tmp/hf" "$bin" serve --bind "127.0.0.1:$port" \
    --tls-cert "$tmp/cert.pem" --tls-key "$tmp/key.pem" --files-dir "$tmp/files" \
    --recognizer tests/data/face/arcface_r50_bn.onnx --api-key testkey \
    --allow-fetch-host "127.0.0.1:$hook_port" "$@" 2>"$log" &
  server_pid=$!
  for _ in $(seq 600); do
    grep -q "^serving " "$log" && break
    kill -0 "$server_pid" 2>/dev/null || { echo "server exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.2
  done
  grep -q "^serving " "$log" || { echo "server not ready after 120 s" >&2; cat "$log" >&2; exit 1; }
  echo "server ($*) ready on https://127.0.0.1:$port ($((SECONDS - started)) s)"
}

start_server server --base-model tests/data/sd/tiny-a \
  --ip-adapter tests/data/faceid/ip-adapter-faceid_tiny.bin

status=0
run_suite() { # name, command...
  local name=$1 t=$SECONDS rc=0
  shift
  timeout --foreground 900 "$@" 2>&1 | tee "$tmp/$name.out" || rc=$?  # 124: the suite hung
  echo "$name: exit $rc in $((SECONDS - t)) s" >>"$tmp/summary"
  [[ $rc -eq 0 ]] || status=1
}
run_clients() { # suite name suffix, then extra environment (FACEID_MODEL_TYPE=...)
  run_suite "python$1" env FAL_KEY=testkey FAL_RUN_HOST="127.0.0.1:$port" \
    FAL_QUEUE_RUN_HOST="127.0.0.1:$port/queue" SSL_CERT_FILE="$tmp/cert.pem" \
    FACEID_WEBHOOK_PORT="$hook_port" "${@:2}" \
    "$venv/bin/python" "$here/test_python_client.py"
  run_suite "js$1" env FAL_KEY=testkey FACEID_URL="https://127.0.0.1:$port" \
    NODE_EXTRA_CA_CERTS="$tmp/cert.pem" "${@:2}" node "$here/test_js_client.mjs"
}
run_clients ""
kill_server

# The same clients against an API node of a queue shared through a real redis-server, whose
# requests run on a `faceid worker` process (which also sends the webhooks).
redis_port="$(free_port)"
mkdir -p "$tmp/redis"
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$tmp/redis" --appendonly yes \
  --appendfsync always --save "" >"$tmp/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null && break
  sleep 0.1
done
queue="redis://127.0.0.1:$redis_port/0"
start_server server-shared --queue "$queue"
HF_HUB_OFFLINE=1 HF_HOME="$tmp/hf" "$bin" worker --queue "$queue" \
  --public-url "https://127.0.0.1:$port" --allow-fetch-host "127.0.0.1:$hook_port" \
  --base-model tests/data/sd/tiny-a --ip-adapter tests/data/faceid/ip-adapter-faceid_tiny.bin \
  --recognizer tests/data/face/arcface_r50_bn.onnx 2>"$tmp/worker.log" &
worker_pid=$!
run_clients "-shared"
kill_server
stop_shared

# The other model types on their tiny models, a server each (local files name one adapter): the
# generating checks of both clients with `model_type` set.
model_type_clients() { # model type, then its model options of `faceid serve`
  local model_type=$1
  shift
  start_server "server-$model_type" --model-type "$model_type" "$@"
  run_clients "-$model_type" FACEID_MODEL_TYPE="$model_type"
  kill_server
}
plus=tests/data/faceid_plus
sdxl=tests/data/sdxl
vit=tests/data/clip_vision/tiny-vit
model_type_clients 1_5-v1-plus --base-model "$plus/tiny-sd128" \
  --ip-adapter "$plus/ip-adapter-faceid-plus_tiny.bin" --image-encoder "$vit"
model_type_clients 1_5-v2-plus --base-model "$plus/tiny-sd128" \
  --ip-adapter "$plus/ip-adapter-faceid-plusv2_tiny.bin" --image-encoder "$vit"
model_type_clients SDXL-v1 --base-model "$sdxl/tiny-xl" \
  --ip-adapter "$sdxl/ip-adapter-faceid_sdxl_tiny.bin"
model_type_clients SDXL-v2-plus --base-model "$sdxl/tiny-xl" \
  --ip-adapter "$sdxl/ip-adapter-faceid-plusv2_sdxl_tiny.bin" --image-encoder "$vit"

echo
echo "== summary =="
grep -h -E "^(PASS|FAIL) " "$tmp"/python*.out "$tmp"/js*.out | cut -c1-300 || true
cat "$tmp/summary"
echo "total: $((SECONDS - started)) s, $([[ $status -eq 0 ]] && echo OK || echo FAILED)"
if [[ $status -ne 0 ]]; then
  echo "--- server log (tail) ---"
  tail -n 40 "$tmp/server.log"
fi
exit $status
