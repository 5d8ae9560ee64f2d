#!/usr/bin/env bash
# Make sure the RabbitMQ the tests use answers on 127.0.0.1:5672 with its management API (the
# tests make a vhost per test through it) and its prometheus endpoint. Installs it on a fresh
# Debian machine when run as root; otherwise says how.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! command -v rabbitmq-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing rabbitmq-server from Debian's packages"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
    else
        echo "RabbitMQ is not installed: run 'sudo apt-get install rabbitmq-server'" >&2
        echo "(or: docker run -d -p 5672:5672 -p 15672:15672 rabbitmq:3.13-management)" >&2
        exit 1
    fi
fi

if ! port_open 5672; then
    echo "starting rabbitmq-server"
    rabbitmq-server -detached
fi
for _ in $(seq 60); do
    if rabbitmqctl -q status >/dev/null 2>&1 && port_open 5672; then break; fi
    sleep 1
done
port_open 5672 || { echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1; }

rabbitmq-plugins -q enable rabbitmq_management rabbitmq_prometheus >/dev/null
for _ in $(seq 30); do
    port_open 15672 && exit 0
    sleep 1
done
echo "the RabbitMQ management API did not come up on 127.0.0.1:15672" >&2
exit 1
