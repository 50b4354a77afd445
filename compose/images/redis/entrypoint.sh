#!/bin/bash
# Starts Redis with the password from the environment; it never lands in a file in the image.
set -euo pipefail

: "${REDIS_PASSWORD:?REDIS_PASSWORD must be set}"
password=$REDIS_PASSWORD
unset REDIS_PASSWORD
# Redis rewrites its process title, so the argument does not stay visible in ps.
exec redis-server /etc/redis/redis.conf --requirepass "$password"
