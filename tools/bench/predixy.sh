#!/bin/sh
# Starts predixy (built from its repository, never committed) as the peer of `make bench`:
#   make bench PEER=127.0.0.1:7617 PEER_CMD="tools/bench/predixy.sh /tmp/predixy/src/predixy 127.0.0.1:7617"
# bench appends the cluster's seeds (comma-separated) as the last argument. One worker
# thread, as the proxy's default on this size of machine; no latency monitor.
set -eu
bin=$1 bind=$2 seeds=$3
dir=$(mktemp -d)
{
	echo "Name bench"
	echo "Bind $bind"
	echo "WorkerThreads 1"
	echo "ClientTimeout 0"
	for l in Verb Debug Info Notice Warn Error; do echo "Log${l}Sample 0"; done
	echo "Authority {"
	echo "  Auth {"
	echo "    Mode write"
	echo "  }"
	echo "}"
	echo "ClusterServerPool {"
	echo "  MasterReadPriority 100"
	echo "  RefreshInterval 1"
	echo "  ServerTimeout 3"
	echo "  Servers {"
	echo "$seeds" | tr ',' '\n' | sed 's/^/    + /'
	echo "  }"
	echo "}"
} > "$dir/predixy.conf"
exec "$bin" "$dir/predixy.conf"
