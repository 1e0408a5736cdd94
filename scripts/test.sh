#!/usr/bin/env bash
# Builds everything and runs the whole test suite against a private PostgreSQL.
#   scripts/test.sh [ctest arguments, e.g. -R unit_tests or -V]
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Tests create and drop their own databases from this URL, so its role must be able to
# create databases (the private cluster's `postgres` is a superuser).
if [ -z "${DATABASE_URL:-}" ] && [ -n "${KAPSO_TEST_DATABASE_URL:-}" ]; then
  export DATABASE_URL="$KAPSO_TEST_DATABASE_URL"
fi

kapso_install_packages
# All targets, or BUILD_TARGETS when set.
# shellcheck disable=SC2119
kapso_build
# Stop the cluster afterwards only if this run started it (run.sh's one keeps running).
trap kapso_pg_stop_if_started EXIT
kapso_database

export KAPSO_TEST_DATABASE_URL="$DATABASE_URL"
# Tests choose their own secrets and tokens; the developer's must not leak into them.
unset KAPSO_WEBHOOK_SECRET KAPSO_VERIFY_TOKEN

kapso_log "running ctest $*"
status=0
ctest --test-dir "$BUILD_DIR" --output-on-failure --no-tests=error "$@" || status=$?
if [ "$status" -eq 0 ]; then
  kapso_log "all tests passed"
else
  kapso_log "ctest failed with status $status"
fi
exit "$status"
