#!/usr/bin/env bash
# Measures the bridge with k6 (deploy/bench/signin.js): sign-ins as Mattermost makes them, the
# user endpoint alone, or refreshes; and, around each k6 run, what each operation cost the bridge
# and Redis. It prints one table: operations/s, latency, bridge CPU, Redis CPU, Redis commands
# and round trips per operation, and the bridge's memory.
#
#   deploy/bench/k6.sh [--vus 64] [--duration 10s] [--rounds 1] [--scenario signin|user|refresh]
#                      [--store redis|memory] [--floor] [--json FILE]
#
# Without a target it builds ssobridge (or takes $SSOBRIDGE_BIN) and starts, each in a process of
# its own on free loopback ports: redis-server (--store redis, the default), the GitLab emulator
# (`ssobridge gitlab-emulator`, which signs its first user in without a form) and `ssobridge
# serve`, registers Mattermost (`apps create --mattermost-url`, without refresh tokens, as an
# administrator registers it) and an application with refresh tokens for --scenario refresh, and
# stops everything afterwards.
#
# --floor puts deploy/bench/floor in the bridge's and the emulator's places: a bridge and a
# provider that do nothing but answer the same requests and make the same two calls to the
# provider over HTTP, storing and checking nothing. Its figures are the floor that k6 and HTTP set
# on this machine: what no bridge measured here goes below, beside which a bridge's own figures
# are read (see README "Measuring with k6").
#
# Against a bridge of one's own (whose upstream must sign the person in without a form, such as
# `ssobridge gitlab-emulator`; see README "Measuring with k6"):
#
#   BRIDGE_URL=https://sso.example.com CLIENT_ID=... CLIENT_SECRET=... \
#   REDIRECT_URI=https://chat.example.com/signup/gitlab/complete \
#   [ADMIN_URL=http://127.0.0.1:9090 ADMIN_TOKEN=...] [REDIS_URL=redis://...] [BRIDGE_PID=1234] \
#   deploy/bench/k6.sh --vus 16 --rounds 3
#
# (each variable also as a flag: --bridge-url, --client-id, --client-secret, --redirect-uri,
# --admin-url, --admin-token, --redis-url, --bridge-pid). The bridge's CPU is read from
# /proc/BRIDGE_PID/stat when the bridge runs on this machine, else from ADMIN_URL's
# process_cpu_seconds_total; round trips from ADMIN_URL's ssobridge_redis_round_trips_total; Redis's
# CPU and commands from REDIS_URL's INFO (every client's in the window, not only the bridge's).
#
# k6: $K6, else `k6` on PATH, else the one in ~/.cache/ssobridge/k6 (XDG_CACHE_HOME), built there
# with `go install go.k6.io/k6@v1.8.1` the first time (a few minutes). Nothing is installed
# elsewhere. Needs bash, curl and python3; redis-server and redis-cli for Redis.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
script="$root/deploy/bench/signin.js"
k6_version=v1.8.1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "k6.sh: $*" >&2; exit 2; }

vus=64 duration=10s rounds=1 scenario=signin store=redis store_given="" floor="" json_out=""
bridge_url=${BRIDGE_URL:-} client_id=${CLIENT_ID:-} client_secret=${CLIENT_SECRET:-} redirect_uri=${REDIRECT_URI:-}
admin_url=${ADMIN_URL:-} admin_token=${ADMIN_TOKEN:-} redis_url=${REDIS_URL:-} bridge_pid=${BRIDGE_PID:-}
while [ $# -gt 0 ]; do
  flag=$1
  case "$flag" in
    -h|--help) usage; exit 0 ;;
    --floor) floor=1; shift; continue ;;
    --*=*) set -- "${flag%%=*}" "${flag#*=}" "${@:2}"; continue ;;
  esac
  [ $# -ge 2 ] || die "$flag needs a value (see --help)"
  case "$flag" in
    --vus) vus=$2 ;;
    --duration) duration=$2 ;;
    --rounds) rounds=$2 ;;
    --scenario) scenario=$2 ;;
    --store) store=$2 store_given=1 ;;
    --json) json_out=$2 ;;
    --bridge-url) bridge_url=$2 ;;
    --client-id) client_id=$2 ;;
    --client-secret) client_secret=$2 ;;
    --redirect-uri) redirect_uri=$2 ;;
    --admin-url) admin_url=$2 ;;
    --admin-token) admin_token=$2 ;;
    --redis-url) redis_url=$2 ;;
    --bridge-pid) bridge_pid=$2 ;;
    *) die "unknown flag $flag (see --help)" ;;
  esac
  shift 2
done
[[ $vus =~ ^[1-9][0-9]*$ ]] || die "--vus $vus: want a positive whole number"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || die "--rounds $rounds: want a positive whole number"
[[ $duration =~ ^([0-9]+(ms|s|m|h))+$ ]] || die "--duration $duration: want a duration such as 10s, 500ms or 1m30s"
case "$scenario" in signin|user|refresh) ;; *) die "--scenario $scenario: want signin, user or refresh" ;; esac
case "$store" in redis|memory) ;; *) die "--store $store: want redis or memory" ;; esac
if [ -n "$floor" ]; then
  [ -z "$store_given" ] || die "--floor stores nothing: leave out --store"
  [ -z "$bridge_url" ] || die "--floor starts its own floor bridge: leave out the bridge URL"
fi
if [ -n "$bridge_url" ]; then
  [[ $bridge_url =~ ^https?://[^/]+ ]] || die "BRIDGE_URL $bridge_url: want the bridge's public URL with its scheme, such as https://sso.example.com"
  for v in client_id client_secret redirect_uri; do
    [ -n "${!v}" ] || die "with a bridge URL, give ${v^^} (or --${v//_/-}) too"
  done
  [ -z "$bridge_pid" ] || [ -r "/proc/$bridge_pid/stat" ] || die "BRIDGE_PID $bridge_pid: no such process on this machine"
else
  for v in client_id client_secret redirect_uri admin_url redis_url bridge_pid; do
    [ -z "${!v}" ] || die "${v^^} (--${v//_/-}) goes with a bridge URL; without one this script starts its own bridge"
  done
fi
command -v python3 >/dev/null || die "needs python3"
command -v curl >/dev/null || die "needs curl"
if [ -n "$bridge_url" ]; then
  answer=$(curl -s -o /dev/null -w '%{http_code} %{errormsg}' "${bridge_url%/}/healthz" 2>&1) || true
  case "$answer" in
    200*) ;;
    000*) die "BRIDGE_URL: nothing answers at ${bridge_url%/}/healthz (${answer#000 }): check the URL, and http or https" ;;
    *) die "BRIDGE_URL: ${bridge_url%/}/healthz answered HTTP ${answer%% *}, where the bridge's public listener answers 200: is BRIDGE_URL the bridge's public URL?" ;;
  esac
fi

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# k6: found, or built into the cache the first time.
k6=${K6:-}
if [ -z "$k6" ]; then
  k6=$(command -v k6 || true)
fi
if [ -z "$k6" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/ssobridge/k6"
  k6="$cache/k6"
  if [ ! -x "$k6" ] || ! "$k6" version 2>/dev/null | grep -q "k6 $k6_version"; then
    command -v go >/dev/null || die "k6 is not on PATH and go is not either, to build it: install k6 $k6_version (https://grafana.com/docs/k6/latest/set-up/install-k6/) or Go"
    echo "k6.sh: k6 is not on PATH; building k6 $k6_version into $cache (once; a few minutes)" >&2
    mkdir -p "$cache"
    GOBIN="$cache" GOFLAGS=-mod=mod go install "go.k6.io/k6@$k6_version" >&2
  fi
fi
echo "k6.sh: $("$k6" version | head -1) ($k6)" >&2

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() { for _ in $(seq 150); do curl -s -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "k6.sh: nothing listens at $1; its log:" >&2; cat "$2" >&2; exit 1; }
wait_http() { for _ in $(seq 150); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "k6.sh: no answer at $1; its log:" >&2; cat "$2" >&2; exit 1; }

target=own
if [ -n "$floor" ]; then
  target=floor
  echo "k6.sh: building the floor bridge (deploy/bench/floor)" >&2
  (cd "$root" && go build -o "$work/floor" ./deploy/bench/floor)
  bridge_port=$(free_port) provider_port=$(free_port)
  bridge_url="http://127.0.0.1:$bridge_port"
  "$work/floor" -role provider -listen "127.0.0.1:$provider_port" >"$work/provider.log" 2>&1 &
  pids+=($!)
  "$work/floor" -role bridge -listen "127.0.0.1:$bridge_port" -provider "http://127.0.0.1:$provider_port" >"$work/bridge.log" 2>&1 &
  bridge_pid=$!
  pids+=($bridge_pid)
  # It checks no client: these only make the script's requests whole.
  client_id=floor client_secret=floor redirect_uri=http://127.0.0.1:1/signup/gitlab/complete
  wait_listening "http://127.0.0.1:$provider_port/" "$work/provider.log"
  wait_listening "$bridge_url/" "$work/bridge.log"
  store=none
elif [ -z "$bridge_url" ]; then
  target=local
  bin=${SSOBRIDGE_BIN:-}
  if [ -z "$bin" ]; then
    echo "k6.sh: building ssobridge" >&2
    (cd "$root" && go build -o "$work/ssobridge" ./cmd/ssobridge)
    bin="$work/ssobridge"
  fi
  bridge_port=$(free_port) admin_port=$(free_port) gitlab_port=$(free_port)
  bridge_url="http://127.0.0.1:$bridge_port" gitlab="http://127.0.0.1:$gitlab_port"
  admin_url="http://127.0.0.1:$admin_port"
  # The serve and apps commands read only what is given here.
  unset $(env | sed -n 's/^\(SSOBRIDGE_[A-Z0-9_]*\)=.*/\1/p')
  store_env=()
  if [ "$store" = redis ]; then
    command -v redis-server >/dev/null || die "needs redis-server on PATH (or --store memory)"
    redis_port=$(free_port)
    mkdir "$work/redis"
    redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work/redis" --save "" --appendonly no >"$work/redis.log" 2>&1 &
    pids+=($!)
    redis_url="redis://127.0.0.1:$redis_port/0"
    for _ in $(seq 100); do redis-cli -u "$redis_url" ping >/dev/null 2>&1 && break; sleep 0.05; done
    store_env=(SSOBRIDGE_REDIS_URL="$redis_url")
  else
    store_env=(SSOBRIDGE_APPS_FILE="$work/apps.json")
  fi
  upstream_id=k6-bridge upstream_secret=$("$bin" genkey)
  "$bin" gitlab-emulator --emulator-listen "127.0.0.1:$gitlab_port" --emulator-public-url "$gitlab" \
    --emulator-client-id "$upstream_id" --emulator-client-secret "$upstream_secret" \
    --emulator-redirect-uri "$bridge_url/oauth/callback" >"$work/gitlab.log" 2>&1 &
  pids+=($!)
  wait_http "$gitlab/.well-known/openid-configuration" "$work/gitlab.log"

  # Mattermost as an administrator registers it, and an application with refresh tokens.
  site=http://127.0.0.1:1
  app_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
  if [ "$scenario" = refresh ]; then
    app=$(env "${store_env[@]}" "$bin" apps create --name "k6 refresh" --redirect-uri "$site/signup/gitlab/complete" --trusted --refresh-tokens --json)
  else
    app=$(env "${store_env[@]}" "$bin" apps create --name Mattermost --mattermost-url "$site" --trusted --json)
  fi
  client_id=$(app_field id <<<"$app") client_secret=$(app_field secret <<<"$app")
  redirect_uri="$site/signup/gitlab/complete"

  # Every request comes from one address: the limits stay on, so that their cost is measured,
  # with bounds the load never reaches. --log-level warn: no access log line per request.
  limits=(--rate-limit-sign-in 1000000000/1m --max-pending-per-address 1000000000 --max-pending 1000000000)
  env "${store_env[@]}" "$bin" serve --public-url "$bridge_url" --listen "127.0.0.1:$bridge_port" --admin-listen "127.0.0.1:$admin_port" \
    --gitlab-url "$gitlab" --gitlab-client-id "$upstream_id" --gitlab-client-secret "$upstream_secret" \
    --encryption-key "$("$bin" genkey)" --log-level warn "${limits[@]}" >"$work/bridge.log" 2>&1 &
  bridge_pid=$!
  pids+=($bridge_pid)
  wait_http "$admin_url/readyz" "$work/bridge.log"
fi

# What is to be read must answer now, rather than show as "-" after the run.
if [ "$target" = own ]; then
  if [ -n "$admin_url" ]; then
    auth=()
    [ -z "$admin_token" ] || auth=(-H "Authorization: Bearer $admin_token")
    status=$(curl -s -o /dev/null -w '%{http_code}' "${auth[@]}" "${admin_url%/}/metrics") || true
    case "$status" in
      200) ;;
      000|"") die "ADMIN_URL: nothing answers at ${admin_url%/}/metrics (the bridge's operators' listener, SSOBRIDGE_ADMIN_LISTEN)" ;;
      401) if [ -n "$admin_token" ]; then
             die "ADMIN_URL: ${admin_url%/}/metrics refused ADMIN_TOKEN (HTTP 401): give the bridge's SSOBRIDGE_ADMIN_TOKEN"
           fi
           die "ADMIN_URL: ${admin_url%/}/metrics asks for a token (HTTP 401): give ADMIN_TOKEN, the bridge's SSOBRIDGE_ADMIN_TOKEN" ;;
      404) die "ADMIN_URL: ${admin_url%/}/metrics answered HTTP 404: this is not the bridge's operators' listener (SSOBRIDGE_ADMIN_LISTEN, 127.0.0.1:9090 by default), perhaps its public one" ;;
      *) die "ADMIN_URL: ${admin_url%/}/metrics answered HTTP $status" ;;
    esac
  fi
  if [ -n "$redis_url" ]; then
    command -v redis-cli >/dev/null || die "REDIS_URL needs redis-cli on PATH"
    redis-cli -u "$redis_url" --no-auth-warning ping 2>&1 | grep -q PONG || die "REDIS_URL: Redis does not answer PING: $(redis-cli -u "$redis_url" --no-auth-warning ping 2>&1 | head -1)"
  fi
fi

# sample writes the counters, one "name value" a line.
sample() {
  local out=$1
  : >"$out"
  if [ -n "$bridge_pid" ]; then
    python3 - "$bridge_pid" >>"$out" <<'EOF'
import os, sys
pid = sys.argv[1]
stat = open(f"/proc/{pid}/stat").read()
f = stat[stat.rindex(")") + 2:].split()
tick = os.sysconf("SC_CLK_TCK")
print("bridge_cpu_s", (int(f[11]) + int(f[12])) / tick)
for line in open(f"/proc/{pid}/status"):
    k, _, v = line.partition(":")
    if k in ("VmRSS", "VmHWM"):
        print("bridge_" + k.lower() + "_bytes", int(v.split()[0]) * 1024)
EOF
  fi
  if [ -n "$admin_url" ]; then
    local auth=()
    [ -z "$admin_token" ] || auth=(-H "Authorization: Bearer $admin_token")
    curl -fsS "${auth[@]}" "${admin_url%/}/metrics" 2>/dev/null | awk '
      $1=="process_cpu_seconds_total" {print "metrics_cpu_s", $2}
      $1=="process_resident_memory_bytes" {print "metrics_rss_bytes", $2}
      $1=="ssobridge_redis_round_trips_total" {print "round_trips", $2}
      $1=="ssobridge_redis_commands_total" {print "bridge_commands", $2}' >>"$out" || true
  fi
  if [ -n "$redis_url" ]; then
    redis-cli -u "$redis_url" --no-auth-warning info all 2>/dev/null | tr -d '\r' | awk -F: '
      $1=="used_cpu_sys" || $1=="used_cpu_user" {cpu += $2}
      $1=="total_commands_processed" {print "redis_total_commands", $2}
      $1=="used_memory" {print "redis_used_memory", $2}
      $1 ~ /^cmdstat_/ && $1 != "cmdstat_info" {split($2, a, /[=,]/); calls += a[2]}
      END {if (NR) {print "redis_cpu_s", cpu; print "redis_commandstats_calls", calls}}' >>"$out" || true
  fi
}

# children_cpu is the CPU time, in seconds, of the children this shell has waited for (bash's
# times, which must run in this shell, not in a subshell): around a k6 run, k6's own, its setup
# included, and the few short commands of sample.
children_cpu() { times >"$work/times"; sed -n 2p "$work/times" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }; print t }'; }

echo "k6.sh: scenario $scenario, $vus VUs, $duration, $rounds round(s), against $bridge_url ($target)" >&2
for round in $(seq "$rounds"); do
  log="$work/k6-$round.log"
  children_cpu >"$work/cpu0"
  K6_NO_USAGE_REPORT=true BRIDGE_URL="$bridge_url" CLIENT_ID="$client_id" CLIENT_SECRET="$client_secret" REDIRECT_URI="$redirect_uri" \
    SCENARIO="$scenario" VUS="$vus" DURATION="$duration" READY_PAUSE=1 \
    "$k6" run --quiet --no-color --no-usage-report --summary-export "$work/summary-$round.json" \
    --include-system-env-vars "$script" >"$work/k6-$round.out" 2>"$log" &
  k6pid=$!
  # The window opens when setup() (the warmup sign-ins) says it is done, before the VUs start.
  until grep -q "ssobridge-k6: setup done" "$log" 2>/dev/null || ! kill -0 "$k6pid" 2>/dev/null; do sleep 0.02; done
  sample "$work/before-$round"
  rc=0
  wait "$k6pid" || rc=$?
  # The bridge writes a trace once its sign-in's next step is no longer awaited, in batches every
  # 100 ms: the last sign-ins' land within this.
  sleep 0.3
  sample "$work/after-$round"
  children_cpu >"$work/cpu1"
  echo "k6_cpu_s $(cat "$work/cpu0")" >>"$work/before-$round"
  echo "k6_cpu_s $(cat "$work/cpu1")" >>"$work/after-$round"
  if [ "$rc" != 0 ]; then
    echo "k6.sh: round $round: k6 exited $rc (99: a check failed; 107: the script stopped, as setup() does when a warm-up sign-in fails); its output:" >&2
    # k6's log without its timestamps, each line once: the script logs a failure once per VU.
    cat "$work/k6-$round.out" >&2
    sed 's/^time="[^"]*" //' "$log" | awk '!seen[$0]++' >&2
    [ "$target" = own ] || { echo "--- bridge log" >&2; tail -20 "$work/bridge.log" >&2; }
    exit 1
  fi
done

python3 - "$work" "$rounds" "$scenario" "$vus" "$duration" "$bridge_url" "$target" "$store" "$json_out" <<'EOF'
import json, os, platform, re, statistics, sys, time
work, rounds, scenario, vus, duration, bridge, target, store, json_out = sys.argv[1:]
rounds = int(rounds)

def seconds(d):
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * unit[u] for n, u in re.findall(r"(\d+)(ms|s|m|h)", d))

def counters(path):
    out = {}
    for line in open(path):
        k, v = line.split()
        out[k] = float(v)
    return out

per = {"signin": "sign-in", "user": "user request", "refresh": "refresh"}[scenario]
trend = {"signin": "signin", "user": "signin_user", "refresh": "refresh"}[scenario]
results = []
for r in range(1, rounds + 1):
    s = json.load(open(f"{work}/summary-{r}.json"))["metrics"]
    b, a = counters(f"{work}/before-{r}"), counters(f"{work}/after-{r}")
    ops = s.get("operations_completed", {}).get("count", 0)
    def delta(k, scale=1.0, less=0.0):
        if k in a and k in b and ops:
            return (a[k] - b[k] - less) * scale / ops
        return None
    cpu = delta("bridge_cpu_s", 1000)
    cpu_src = "/proc/PID/stat"
    if cpu is None:
        cpu, cpu_src = delta("metrics_cpu_s", 1000), "process_cpu_seconds_total"
    res = {
        "ops": ops,
        "per_second": ops / seconds(duration),
        "p50_ms": s[trend]["med"], "p99_ms": s[trend]["p(99)"],
        "bridge_cpu_ms": cpu, "bridge_cpu_source": cpu_src if cpu is not None else None,
        "redis_cpu_ms": delta("redis_cpu_s", 1000),
        # INFO commandstats: every command Redis ran, those a script runs included, INFO left
        # out. total_commands_processed counts the same on Redis 7 (less the first sample's INFO).
        "redis_commands": delta("redis_commandstats_calls"),
        "redis_total_commands_processed": delta("redis_total_commands", less=1),
        "round_trips": delta("round_trips"),
        "bridge_commands": delta("bridge_commands"),
        "k6_cpu_ms": delta("k6_cpu_s", 1000),
        "rss_mib": (a.get("bridge_vmrss_bytes") or a.get("metrics_rss_bytes") or 0) / 2**20 or None,
        "redis_used_memory_mib": a["redis_used_memory"] / 2**20 if "redis_used_memory" in a else None,
        "steps": {k[len("signin_"):]: {"p50_ms": v["med"], "p99_ms": v["p(99)"]} for k, v in s.items() if k.startswith("signin_")},
        "checks_failed": s.get("checks", {}).get("fails", 0),
    }
    results.append(res)

def med(k):
    v = [r[k] for r in results if r[k] is not None]
    return statistics.median(v) if v else None

def fmt(v, f):
    return "-" if v is None else format(v, f)

cols = [("per_second", f"{per}s/s" if scenario != "refresh" else "refreshes/s", ",.0f"), ("p50_ms", "p50 ms", ".1f"), ("p99_ms", "p99 ms", ".1f"),
        ("bridge_cpu_ms", "bridge CPU ms", ".3f"), ("redis_cpu_ms", "Redis CPU ms", ".3f"),
        ("redis_commands", "Redis cmds", ".1f"), ("bridge_commands", "bridge sent", ".1f"),
        ("round_trips", "round trips", ".1f"), ("rss_mib", "RSS MiB", ".1f"),
        ("k6_cpu_ms", "k6 CPU ms", ".3f")]
where = {"local": "local, store " + store, "own": "own", "floor": "the floor: deploy/bench/floor, HTTP alone"}[target]
print(f"\nk6 {scenario}: {vus} VUs, {duration} a round, {rounds} round(s), {bridge} ({where})")
print(f"machine: {os.cpu_count()} CPUs, {platform.machine()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
widths = [max(len(h), 7) for _, h, _ in cols]
def row(first, cells):
    print(f"  {first:<7}" + "".join(f"  {c:>{w}}" for c, w in zip(cells, widths)))
row("round", [h for _, h, _ in cols])
for i, r in enumerate(results, 1):
    row(str(i), [fmt(r[k], f) for k, _, f in cols])
if rounds > 1:
    row("median", [fmt(med(k), f) for k, _, f in cols])
last = results[-1]
if last["steps"] and scenario == "signin":
    print("\n  steps (last round): " + ", ".join(f"{k} p50 {v['p50_ms']:.1f} / p99 {v['p99_ms']:.1f} ms" for k, v in last["steps"].items()))
print(f"""
  per {per}: bridge CPU from {last['bridge_cpu_source'] or 'nowhere (give BRIDGE_PID or ADMIN_URL)'};
  Redis CPU from INFO cpu (used_cpu_sys + used_cpu_user) and Redis cmds from INFO commandstats
  (every command Redis ran, those inside scripts included), both for every client in the window;
  bridge sent and round trips are the bridge's own ssobridge_redis_commands_total (a script one
  command, a pipeline's each) and ssobridge_redis_round_trips_total. k6 CPU is the load
  generator's own (its setup's warm-up included): on a machine shared with the bridge, it is CPU
  the bridge does not get.""")
if json_out:
    json.dump({"scenario": scenario, "vus": int(vus), "duration": duration, "target": bridge, "store": store,
               "rounds": results, "median": {k: med(k) for k, _, _ in cols}}, open(json_out, "w"), indent=1)
EOF
