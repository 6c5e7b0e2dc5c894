#!/bin/sh
# Installs what the tests, the demo and the benchmark need, only where it is missing:
# Debian (apt-get) or FreeBSD (pkg). Run as root, or with sudo available.
set -eu

need=""
have() { command -v "$1" >/dev/null 2>&1; }

SUDO=""
if [ "$(id -u)" != 0 ] && have sudo; then SUDO=sudo; fi

if [ -f /etc/debian_version ]; then
	have redis-server || need="$need redis-server"
	have redis-cli || need="$need redis-tools"
	have redis-benchmark || need="$need redis-tools"
	have ucarp || need="$need ucarp"
	have ip || need="$need iproute2"
	have shellcheck || need="$need shellcheck"
	have mandoc || need="$need mandoc"
	have promtool || need="$need prometheus"
	# php-cli and its redis extension in one pass (the phpredis compatibility test).
	if ! have php; then
		need="$need php-cli php-redis"
	elif ! php -m 2>/dev/null | grep -qi '^redis$'; then
		need="$need php-redis"
	fi
	if [ -n "$need" ]; then
		echo "install-deps: apt-get install$need"
		$SUDO apt-get update -qq
		# shellcheck disable=SC2086
		DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $need >/dev/null
		# Debian starts the packaged servers; the tests start their own.
		for svc in redis-server prometheus; do
			if have service; then $SUDO service "$svc" stop >/dev/null 2>&1 || true; fi
		done
	fi
elif [ "$(uname -s)" = FreeBSD ]; then
	have redis-server || need="$need redis"
	have shellcheck || need="$need hs-ShellCheck"
	have promtool || need="$need prometheus"
	if [ -n "$need" ]; then
		echo "install-deps: pkg install$need"
		# shellcheck disable=SC2086
		$SUDO pkg install -y $need
	fi
else
	echo "install-deps: unsupported system; install redis-server and redis-cli yourself" >&2
fi
