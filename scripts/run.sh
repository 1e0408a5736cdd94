#!/usr/bin/env bash
# Builds kapso-ingest, prepares a database with a demo workspace and serves in the foreground.
#   scripts/run.sh [--section.option=value ...]   serve; arguments go to kapso-ingest
#   scripts/run.sh --stop-db                      stop the private PostgreSQL and exit
set -euo pipefail

# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  --stop-db)
    kapso_pg_stop
    exit 0
    ;;
  -h|--help)
    sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    echo "Environment: PORT, DATABASE_URL, KAPSO_WEBHOOK_SECRET, KAPSO_VERIFY_TOKEN,"
    echo "PGPORT_PRIVATE, BUILD_TARGETS, BUILD_JOBS, KAPSO_SKIP_PACKAGES (see README.md)."
    echo "Server options: $BINARY --help (once built)."
    exit 0
    ;;
esac

# `serve` is the binary's default command; accept it spelled out too.
if [ "${1:-}" = serve ]; then shift; fi

PORT="${PORT:-8080}"
DEMO_PHONE_NUMBER_ID=123456789012345

kapso_install_packages
if [ -n "${BUILD_TARGETS:-}" ]; then kapso_build; else kapso_build kapso-ingest; fi
[ -x "$BINARY" ] || kapso_die "$BINARY was not built"
kapso_database

kapso_log "applying migrations"
"$BINARY" migrate

kapso_log "registering the demo workspace (slug demo, phone_number_id $DEMO_PHONE_NUMBER_ID)"
workspace_id="$("$BINARY" register-workspace --workspace.name="Demo workspace" \
  --workspace.slug=demo --workspace.phone-number-id="$DEMO_PHONE_NUMBER_ID")"
kapso_log "demo workspace: $(printf '%s\n' "$workspace_id" | tail -n1)"

if [ -z "${KAPSO_WEBHOOK_SECRET:-}" ]; then
  export KAPSO_WEBHOOK_SECRET=demo-secret
  kapso_log "KAPSO_WEBHOOK_SECRET is unset: using the DEMO secret 'demo-secret' (not for production)"
fi

# A realistic Kapso v2 inbound text message, unique on every run.
now="$(date +%s)"
message_id="wamid.DEMO$(date +%Y%m%d%H%M%S)$$"
delivery="$BUILD_DIR/demo-delivery.json"
cat >"$delivery" <<EOF
{"message":{"id":"$message_id","timestamp":"$now","type":"text","text":{"body":"Hola from curl"},"kapso":{"direction":"inbound","status":"received","origin":"cloud_api","whatsapp_conversation_id":"conv_demo_15551234567","content":"Hola from curl","contact_name":"Ana","has_media":false}},"conversation":{"id":"conv_demo_15551234567","phone_number":"+15551234567","phone_number_id":"$DEMO_PHONE_NUMBER_ID","contact_name":"Ana"},"phone_number_id":"$DEMO_PHONE_NUMBER_ID","is_new_conversation":false}
EOF
signature="$(openssl dgst -sha256 -hmac "$KAPSO_WEBHOOK_SECRET" <"$delivery" | awk '{print $NF}')"

if [ -n "${KAPSO_PG_PORT:-}" ]; then
  psql_target="'$DATABASE_URL'"
else
  # Printed literally: the reader's shell expands it, so no password is echoed here.
  # shellcheck disable=SC2016
  psql_target='"$DATABASE_URL"'
fi

cat <<EOF

[kapso] ready to serve on http://127.0.0.1:$PORT. In another terminal, send a signed delivery:

curl -sS -X POST http://127.0.0.1:$PORT/api/webhook/kapso -H 'Content-Type: application/json' -H 'X-Webhook-Event: whatsapp.message.received' -H 'X-Webhook-Signature: $signature' --data-binary @$(printf '%q' "$delivery")

(the body is $delivery, signed with the global secret; a second send
answers "duplicates":1)

and look at what was written:

psql $psql_target -c 'SELECT m.created_at, m.direction, m.sender_type, m.status, m.content, c.phone, c.name FROM messages m JOIN conversations v ON v.id = m.conversation_id JOIN contacts c ON c.id = v.contact_id ORDER BY m.created_at DESC LIMIT 10'

Stop the server with Ctrl-C; the private PostgreSQL keeps running (scripts/run.sh --stop-db stops it).

EOF

# The server runs from the repository root so caf-application.ini and spool/ there are used.
cd "$ROOT"
exec "$BINARY" --http.port="$PORT" "$@"
