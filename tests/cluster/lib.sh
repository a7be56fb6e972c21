# Shared by up.sh, down.sh and watchdog.sh (sourced, not run).
# shellcheck shell=bash
dir="${FTSCALE_CLUSTER_DIR:-${FTSCALE_CACHE:-$HOME/.cache/ftscale}/cluster/run}"
export FTSCALE_CLUSTER_DIR="$dir"

log() { echo "[cluster] $*" >&2; }

# A pid file holds "PID START_TICKS": the start time (field 22 of /proc/PID/stat) tells our
# process apart from an unrelated one that later got the same PID, so down.sh never kills it.
start_ticks() { awk '{print $22}' "/proc/$1/stat" 2>/dev/null; }

record_pid() {  # component pid
  local t=""
  for _ in 1 2 3 4 5 6 7 8 9 10; do t="$(start_ticks "$2")"; [ -n "$t" ] && break; sleep 0.05; done
  echo "$2 $t" >"$dir/pids/$1.pid"
}

pid_of() {  # component -> prints PID when that very process still runs
  local f="$dir/pids/$1.pid" pid ticks
  [ -f "$f" ] || return 1
  read -r pid ticks <"$f" || return 1
  [ -n "$pid" ] && [ -n "$ticks" ] && [ "$(start_ticks "$pid")" = "$ticks" ] || return 1
  # A zombie (exited, not yet reaped) no longer runs.
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

is_running() { pid_of "$1" >/dev/null; }

free_ports() {  # n -> n distinct free TCP ports, space-separated
  # Below the kernel's ephemeral range (outgoing connections take ports from there, and a
  # port held by one cannot be bound), and not used by any socket in any state right now.
  local n="$1" got=() p low
  low="$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)"
  [ "$low" -gt 21000 ] || low=32768
  while [ "${#got[@]}" -lt "$n" ]; do
    p=$((20000 + RANDOM % (low - 20000)))
    [[ " ${got[*]} " == *" $p "* ]] && continue
    [ -z "$(ss -Htan "sport = :$p" 2>/dev/null)" ] || continue
    got+=("$p")
  done
  echo "${got[*]}"
}

write_kubeconfig() {  # pki-dir user server-url -> kubeconfig on stdout, certificates embedded
  local pki="$1" user="$2" server="$3"
  cat <<YAML
apiVersion: v1
kind: Config
clusters:
- name: ftscale-test
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 "$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$pki/$user.crt")
    client-key-data: $(base64 -w0 "$pki/$user.key")
contexts:
- name: ftscale-test
  context:
    cluster: ftscale-test
    user: $user
    namespace: default
current-context: ftscale-test
YAML
}
