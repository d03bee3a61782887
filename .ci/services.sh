#!/usr/bin/env bash
# Makes sure the servers the tests talk to are running on loopback:
# Redis on 127.0.0.1:6379 and NATS with JetStream on 127.0.0.1:4222.
# Installs them from Debian's packages when they are missing.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_up() {
	for _ in $(seq 1 100); do
		up "$1" && return 0
		sleep 0.1
	done
	echo "services: nothing listens on 127.0.0.1:$1" >&2
	return 1
}

apt_updated=
need() {
	command -v "$1" >/dev/null && return 0
	if [ -z "$apt_updated" ]; then
		apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

if ! up 6379; then
	need redis-server redis-server
	mkdir -p /var/lib/redis /var/log/redis
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
		--dir /var/lib/redis --logfile /var/log/redis/ci.log
	wait_up 6379
fi

if ! up 4222; then
	need nats-server nats-server
	mkdir -p /var/lib/nats-server
	# Its log has no room for a crash: stdout and stderr go to a file of
	# their own.
	start-stop-daemon --start --oknodo --background --output /var/log/nats-server.out \
		--exec "$(command -v nats-server)" -- \
		-a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
	wait_up 4222
fi
echo "services: redis 127.0.0.1:6379 and nats 127.0.0.1:4222 are up"
