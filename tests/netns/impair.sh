#!/usr/bin/env bash
# Impaired networks for media tests: client namespaces hung on one bridge in
# the root namespace (where the node runs, bound to the bridge address), each
# with its own nftables rules for random UDP loss and UDP rate caps, per
# direction. Needs root, iproute2 and nftables; `tc netem` is not required.
#
#   impair.sh bridge BR HOST_IP            bridge BR with HOST_IP/24 (the node's address)
#   impair.sh up BR NS CLIENT_IP           namespace NS on the bridge, CLIENT_IP/24
#   impair.sh set NS UP_LOSS DOWN_LOSS UP_KBIT DOWN_KBIT [BURST_MS]
#                                          replaces NS's rules: random loss in percent on UDP
#                                          leaving (up) and entering (down) the namespace, and
#                                          a rate cap in kbit/s (0: none) as a token-bucket
#                                          policer whose bucket holds BURST_MS of the rate
#                                          (default 250: what a modest bottleneck buffer
#                                          absorbs; nftables polices, it cannot queue)
#   impair.sh clear NS                     no rules
#   impair.sh counters NS                  packets dropped per rule, as JSON
#   impair.sh down NS                      removes the namespace (safe to repeat)
#   impair.sh unbridge BR                  removes the bridge (safe to repeat)
#
# Signaling is TCP and is never impaired: the loss is on media (and STUN,
# which ICE retries).
set -euo pipefail

cmd=${1:?usage: impair.sh bridge|up|set|clear|counters|down|unbridge ...}

veth_names() {
  # Interface names are limited to 15 characters.
  veth_host="${1:0:11}-h"
  veth_client="${1:0:11}-c"
}

case "$cmd" in
bridge)
  br=${2:?bridge} host_ip=${3:?host ip}
  ip link add "$br" type bridge
  ip addr add "$host_ip/24" dev "$br"
  ip link set "$br" up
  ;;
up)
  br=${2:?bridge} ns=${3:?namespace} client_ip=${4:?client ip}
  veth_names "$ns"
  ip netns add "$ns"
  ip link add "$veth_host" type veth peer name "$veth_client"
  ip link set "$veth_client" netns "$ns"
  ip link set "$veth_host" master "$br"
  ip link set "$veth_host" up
  ip -n "$ns" addr add "$client_ip/24" dev "$veth_client"
  ip -n "$ns" link set "$veth_client" up
  ip -n "$ns" link set lo up
  ;;
set)
  ns=${2:?namespace} up_loss=${3:?up loss %} down_loss=${4:?down loss %}
  up_kbit=${5:-0} down_kbit=${6:-0} burst_ms=${7:-250}
  rules_out="" rules_in=""
  if [ "$up_loss" -gt 0 ]; then
    rules_out+="meta l4proto udp numgen random mod 100 < $up_loss counter name up_loss drop"$'\n'
  fi
  if [ "$down_loss" -gt 0 ]; then
    rules_in+="meta l4proto udp numgen random mod 100 < $down_loss counter name down_loss drop"$'\n'
  fi
  # kbit/s -> bytes/s; the bucket holds BURST_MS of the rate (at least two full packets).
  if [ "$up_kbit" -gt 0 ]; then
    rate=$((up_kbit * 125)) burst=$((up_kbit * burst_ms / 8 > 3000 ? up_kbit * burst_ms / 8 : 3000))
    rules_out+="meta l4proto udp limit rate over $rate bytes/second burst $burst bytes counter name up_cap drop"$'\n'
  fi
  if [ "$down_kbit" -gt 0 ]; then
    rate=$((down_kbit * 125)) burst=$((down_kbit * burst_ms / 8 > 3000 ? down_kbit * burst_ms / 8 : 3000))
    rules_in+="meta l4proto udp limit rate over $rate bytes/second burst $burst bytes counter name down_cap drop"$'\n'
  fi
  ip netns exec "$ns" nft -f - <<EOF
table inet impair
delete table inet impair
table inet impair {
  counter up_loss {}
  counter down_loss {}
  counter up_cap {}
  counter down_cap {}
  chain out {
    type filter hook output priority 0; policy accept;
    $rules_out
  }
  chain in {
    type filter hook input priority 0; policy accept;
    $rules_in
  }
}
EOF
  ;;
clear)
  ns=${2:?namespace}
  ip netns exec "$ns" nft delete table inet impair 2>/dev/null || true
  ;;
counters)
  ns=${2:?namespace}
  ip netns exec "$ns" nft -j list counters table inet impair 2>/dev/null || echo '{"nftables": []}'
  ;;
down)
  ns=${2:?namespace}
  veth_names "$ns"
  ip netns del "$ns" 2>/dev/null || true # takes the veth pair with it
  ip link del "$veth_host" 2>/dev/null || true
  ;;
unbridge)
  br=${2:?bridge}
  ip link del "$br" 2>/dev/null || true
  ;;
*)
  echo "unknown command $cmd" >&2
  exit 2
  ;;
esac
