#!/bin/sh
# Starts etcd and, on the first start of a data directory, creates its users and switches authentication on:
# `root` (administration, ETCD_ROOT_PASSWORD) and `control-plane` (read/write under /services/, ETCD_PASSWORD).
# Without ETCD_ROOT_PASSWORD, or with ETCD_AUTH=off, authentication stays off (what the etcd-authentication gate
# must catch; the compose stack always sets the password).
set -eu
etcd --config-file=/etc/etcd/etcd.conf.yml &
etcd_pid=$!
marker=/var/lib/etcd/auth-enabled

if [ "${ETCD_AUTH:-on}" != off ] && [ -n "${ETCD_ROOT_PASSWORD:-}" ] && [ ! -f "$marker" ]; then
  until etcdctl endpoint health >/dev/null 2>&1; do
    kill -0 "$etcd_pid" 2>/dev/null || exit 1
    sleep 0.5
  done
  # The passwords are on etcdctl's command line for a moment, inside this container only.
  etcdctl user add root --new-user-password="$ETCD_ROOT_PASSWORD" >/dev/null
  etcdctl user grant-role root root >/dev/null
  if [ -n "${ETCD_PASSWORD:-}" ]; then
    etcdctl role add services-rw >/dev/null
    etcdctl role grant-permission services-rw --prefix=true readwrite /services/ >/dev/null
    etcdctl user add control-plane --new-user-password="$ETCD_PASSWORD" >/dev/null
    etcdctl user grant-role control-plane services-rw >/dev/null
  fi
  etcdctl auth enable >/dev/null
  touch "$marker"
  echo '{"level":"info","msg":"authentication enabled: users root and control-plane"}' >&2
fi
wait "$etcd_pid"
