#!/usr/bin/env bash
# A "strict network" for one client: a network namespace joined to the root
# namespace by a veth pair, where nftables drops all UDP and every TCP
# connection except to the node's HTTPS port. Needs root, iproute2 and nftables.
#
#   strict-net.sh up NS HOST_IP CLIENT_IP NAME   namespace, veth, NAME -> HOST_IP in its /etc/hosts
#   strict-net.sh firewall NS HOST_IP PORT       only TCP to HOST_IP:PORT (and its answers) passes
#   strict-net.sh counters NS                    the drop counters, as JSON
#   strict-net.sh down NS                        removes all of it (safe to repeat)
#
# The node runs in the root namespace bound to HOST_IP; clients there reach
# it directly. HOST_IP and CLIENT_IP share a /30 that exists only on this veth.
set -euo pipefail

cmd=${1:?usage: strict-net.sh up|firewall|counters|down NS ...}
ns=${2:?namespace name}
veth_host="${ns:0:10}-h"
veth_client="${ns:0:10}-c"

case "$cmd" in
up)
  host_ip=${3:?host ip} client_ip=${4:?client ip} name=${5:?host name}
  ip netns add "$ns"
  ip link add "$veth_host" type veth peer name "$veth_client"
  ip link set "$veth_client" netns "$ns"
  ip addr add "$host_ip/30" dev "$veth_host"
  ip link set "$veth_host" up
  ip -n "$ns" addr add "$client_ip/30" dev "$veth_client"
  ip -n "$ns" link set "$veth_client" up
  ip -n "$ns" link set lo up
  # `ip netns exec` bind-mounts /etc/netns/NS/* over /etc/*.
  mkdir -p "/etc/netns/$ns"
  printf '127.0.0.1 localhost\n%s %s\n' "$host_ip" "$name" >"/etc/netns/$ns/hosts"
  ;;
firewall)
  host_ip=${3:?host ip} port=${4:?https port}
  ip netns exec "$ns" nft -f - <<EOF
table inet strict {
  counter udp_out {}
  counter tcp_out_other {}
  counter other_out {}
  chain out {
    type filter hook output priority 0; policy drop;
    meta l4proto udp counter name udp_out drop
    ip daddr $host_ip tcp dport $port accept
    meta l4proto tcp counter name tcp_out_other drop
    oif lo accept
    counter name other_out drop
  }
  chain in {
    type filter hook input priority 0; policy drop;
    meta l4proto udp drop
    ip saddr $host_ip tcp sport $port accept
    iif lo accept
  }
}
EOF
  ;;
counters)
  ip netns exec "$ns" nft -j list counters table inet strict
  ;;
down)
  ip netns del "$ns" 2>/dev/null || true     # takes the veth pair with it
  ip link del "$veth_host" 2>/dev/null || true
  rm -rf "/etc/netns/$ns"
  ;;
*)
  echo "unknown command $cmd" >&2
  exit 2
  ;;
esac
