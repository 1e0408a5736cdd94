#!/usr/bin/env bash
# Writes kapso-ingest(1) from the binary's own --long-help, so the man page lists exactly
# the options the binary accepts, with their help text.
#   deploy/manpage.sh BINARY OUTPUT VERSION      (OUTPUT ending in .gz is gzipped)
set -euo pipefail

binary="$1" output="$2" version="$3"
# CAF's own option groups; everything else --long-help prints is kapso-ingest's.
caf_sections='^(global|logger|middleman|opencl|openssl|scheduler|stream|work-stealing)$'

help="$("$binary" --long-help 2>&1 >/dev/null || true)"
[ -n "$help" ] || help="$("$binary" --long-help 2>&1 || true)"

# troff: backslashes and a leading dot or quote must not be read as requests.
escape() { sed -e 's/\\/\\e/g' -e "s/^\\([.']\\)/\\\\\\&\\1/" -e 's/-/\\-/g'; }

options="$(printf '%s\n' "$help" | awk -v caf="$caf_sections" '
  match($0, /--[a-z0-9-]+\.[a-z0-9-]+/) {
    name = substr($0, RSTART + 2, RLENGTH - 2)
    section = name; sub(/\..*/, "", section)
    if (section ~ caf) next
    rest = substr($0, RSTART + RLENGTH)
    type = ""
    if (match(rest, /^=<[^>]*>/)) type = substr(rest, RSTART, RLENGTH)
    text = rest; sub(/^[^:]*:[ ]*/, "", text)
    if (section != last) { printf "SECTION\t%s\n", section; last = section }
    printf "OPTION\t%s\t%s\t%s\n", name, type, text
  }')"
[ -n "$options" ] || { echo "manpage.sh: no options in $binary --long-help" >&2; exit 1; }

{
  cat <<EOF
.TH KAPSO\\-INGEST 1 "" "kapso-ingest $version" "User Commands"
.SH NAME
kapso\\-ingest \\- receive Kapso WhatsApp webhooks into a PostgreSQL team inbox
.SH SYNOPSIS
.B kapso\\-ingest
.RB [ serve ]
.RI [ options ]
.br
.B kapso\\-ingest migrate
.RI [ options ]
.br
.B kapso\\-ingest repair\\-route
.RI [ options ]
.br
.B kapso\\-ingest register\\-workspace
.BI \\-\\-workspace.name= N
.BI \\-\\-workspace.slug= S
.BI \\-\\-workspace.phone\\-number\\-id= ID
.RB [ \\-\\-workspace.secret=\\fIX\\fR ]
.br
.B kapso\\-ingest \\-\\-long\\-help
.SH DESCRIPTION
.B kapso\\-ingest
serves
.B POST /api/webhook/kapso
and writes each event (contact, conversation, message, inbox metadata) into PostgreSQL.
It answers 200 only after the events are committed, or written and synced to the local
outage spool when PostgreSQL does not commit in time; the spool is replayed, in order and
idempotently, as soon as the database is back. Several instances may serve one database
behind a load balancer: every write is idempotent.
.PP
It also serves
.B GET /healthz
(the process runs),
.B GET /readyz
(200 when the database answers and the schema is migrated; 503 otherwise and while
shutting down) and
.B GET /metrics
(Prometheus text).
.SH COMMANDS
.TP
.B serve
Serve HTTP (the default). Unless
.B \\-\\-persistence.migrate\\-on\\-start=false,
applies the migrations once it listens, in the background, retried until they succeed;
until then /readyz answers 503 and deliveries go to the spool.
.TP
.B migrate
Apply the SQL migrations compiled into the binary and exit. On the database of the
Next.js route it replaces, it first repairs what the route left behind (phones to E.164,
duplicate contacts, conversations and messages merged, unread counts and previews
recomputed), online: the route may go on writing meanwhile.
.TP
.B repair\\-route
Repair again what the route wrote after
.BR migrate ,
once Kapso's webhook points at kapso\\-ingest and the route receives nothing more.
Running servers may go on writing.
.TP
.B register\\-workspace
Add (or find) a workspace by its Kapso phone_number_id and print its id.
.SH OPTIONS
Options come from
.I caf\\-application.ini
in the working directory (or
.BR \\-\\-config\\-file=\\fIPATH\\fR ),
in sections named as below, and from the command line as
.BR \\-\\-section.name=\\fIvalue\\fR ,
which wins. An invalid value stops start\\-up with one line naming the option.
EOF
  printf '%s\n' "$options" | while IFS=$'\t' read -r kind a b c; do
    if [ "$kind" = SECTION ]; then
      printf '.SS %s\n' "$(printf '%s' "$a" | escape)"
    else
      printf '.TP\n.B \\-\\-%s%s\n%s\n' "$(printf '%s' "$a" | escape)" \
        "$(printf '%s' "$b" | escape)" "$(printf '%s' "$c" | escape)"
    fi
  done
  cat <<'EOF'
.PP
CAF's own options (for example
.BR \-\-scheduler.max\-threads=\fIN\fR )
apply as well; see
.BR \-\-long\-help .
.SH ENVIRONMENT
Read when the matching option is not given.
.TP
.B DATABASE_URL
PostgreSQL URL (persistence.database\-url). A libpq multi\-host URL with
target_session_attrs=read\-write follows a failover to the new primary.
.TP
.B KAPSO_WEBHOOK_SECRET
Global webhook secrets, comma\-separated (security.secrets).
.TP
.B KAPSO_VERIFY_TOKEN
Token for GET verification (security.verify\-token).
.SH SIGNALS
.TP
.BR SIGTERM ", " SIGINT
Answer /readyz 503 and new deliveries 503, answer the deliveries in flight (for at most
http.request\-timeout\-ms), then exit 0. Under systemd (Type=notify) the service reports
READY=1 once it listens and STOPPING=1 when the signal arrives.
.TP
.B SIGUSR1
Withdraw from load balancers: /readyz answers 503 while deliveries are still served as
before, so that HAProxy stops sending here before a SIGTERM (the first step of a rolling
restart). Lasts until SIGUSR2 or the end of the process.
.TP
.B SIGUSR2
Back in after SIGUSR1: /readyz answers as the database allows.
.SH FILES
.TP
.I /etc/kapso\-ingest/caf\-application.ini
Options, every one listed with its default.
.TP
.I /etc/kapso\-ingest/environment
DATABASE_URL and secrets for the systemd unit (mode 0640).
.TP
.I /var/lib/kapso\-ingest/spool
The outage spool: acknowledged deliveries not yet in PostgreSQL.
.SH SEE ALSO
.BR systemctl (1),
.BR haproxy (1),
.BR pg_autoctl (1),
.I /usr/share/doc/kapso\-ingest/README.md
EOF
} >"${output%.gz}.tmp"

case "$output" in
  *.gz) gzip -9n -c "${output%.gz}.tmp" >"$output" ;;
  *) cp "${output%.gz}.tmp" "$output" ;;
esac
rm -f "${output%.gz}.tmp"
