#!/usr/bin/env bash
# Starts the in-memory SQS emulator fauxqs on 127.0.0.1:${FAUXQS_PORT:-4577} in the background,
# unless something already answers there. Idempotent; exits non-zero if it cannot start it.
#
#   scripts/fauxqs/start.sh            # start (or find) the emulator
#   FAUXQS_PORT=4578 scripts/fauxqs/start.sh
#
# Log: target/fauxqs.log (or $FAUXQS_LOG). Stop it with: kill "$(cat target/fauxqs.pid)".
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
port="${FAUXQS_PORT:-4577}"
log="${FAUXQS_LOG:-$root/target/fauxqs.log}"
pidfile="$(dirname "$log")/fauxqs.pid"
deadline="${FAUXQS_START_TIMEOUT:-30}"

answers() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

if answers; then
  echo "fauxqs: something already answers on 127.0.0.1:$port"
  exit 0
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "fauxqs: node and npm are needed to run the SQS emulator (apt-get install nodejs npm)" >&2
  exit 1
fi

if [ ! -d "$here/node_modules/fauxqs" ]; then
  echo "fauxqs: installing the emulator from the npm registry"
  if [ -f "$here/package-lock.json" ]; then
    npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
  else
    npm install --prefix "$here" --no-audit --no-fund --loglevel=error
  fi
fi

mkdir -p "$(dirname "$log")"
echo "fauxqs: starting on 127.0.0.1:$port (log: $log)"
FAUXQS_PORT="$port" nohup node "$here/server.mjs" >"$log" 2>&1 </dev/null &
echo $! >"$pidfile"

for _ in $(seq 1 $((deadline * 10))); do
  if answers; then
    echo "fauxqs: ready on 127.0.0.1:$port (pid $(cat "$pidfile"))"
    exit 0
  fi
  if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    break
  fi
  sleep 0.1
done

echo "fauxqs: the emulator did not answer on 127.0.0.1:$port within ${deadline}s; its log:" >&2
tail -n 30 "$log" >&2 || true
exit 1
