#!/bin/bash
# Initialises the data directory on first start, then runs PostgreSQL in the foreground.
set -euo pipefail

: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
export POSTGRES_USER=${POSTGRES_USER:-control_plane}
export POSTGRES_DB=${POSTGRES_DB:-control_plane}
config=/etc/postgresql/postgresql.conf

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "initialising $PGDATA"
  initdb -D "$PGDATA" --username=postgres --auth-local=peer --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 >/dev/null
  # Socket-only while setting up, so nobody connects to a half-made database.
  pg_ctl -D "$PGDATA" -w -o "-c config_file=$config -c listen_addresses=''" start >/dev/null
  # \getenv keeps the password off every command line.
  psql -X -q -v ON_ERROR_STOP=1 --username=postgres --dbname=postgres <<'SQL'
\getenv app_user POSTGRES_USER
\getenv app_password POSTGRES_PASSWORD
\getenv app_db POSTGRES_DB
CREATE ROLE :"app_user" LOGIN PASSWORD :'app_password';
CREATE DATABASE :"app_db" OWNER :"app_user";
SQL
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "initialised: role and database created"
fi

unset POSTGRES_PASSWORD
exec postgres -D "$PGDATA" -c config_file="$config"
