#!/bin/sh
# Healthy once etcd answers and, when start.sh switches authentication on, once it has.
if [ "${ETCD_AUTH:-on}" != off ] && [ -n "${ETCD_ROOT_PASSWORD:-}" ]; then
  [ -f /var/lib/etcd/auth-enabled ] || exit 1
  ETCDCTL_USER="root:${ETCD_ROOT_PASSWORD}"
  export ETCDCTL_USER
fi
exec etcdctl --endpoints=http://127.0.0.1:2379 endpoint health
