#!/usr/bin/env bash
# README.md's configuration table must be exactly what `kapso-ingest --help-markdown` prints.
#   tests/docs/readme_options.sh BINARY README.md            compare (the CTest test readme_options)
#   tests/docs/readme_options.sh BINARY README.md --update   rewrite the table in README.md
set -euo pipefail

binary="$1"
readme="$2"
begin='<!-- BEGIN kapso-ingest --help-markdown'
end='<!-- END kapso-ingest --help-markdown -->'

for marker in "$begin" "$end"; do
  count="$(grep -c -F -- "$marker" "$readme" || true)"
  if [ "$count" != 1 ]; then
    echo "$readme: expected one line starting with '$marker', found $count" >&2
    exit 1
  fi
done

generated="$("$binary" --help-markdown)"
current="$(awk -v b="$begin" -v e="$end" \
  'index($0, e) == 1 { inside = 0 } inside { print } index($0, b) == 1 { inside = 1 }' "$readme")"

if [ "${3:-}" = --update ]; then
  tmp="$(mktemp)"
  trap 'rm -f "$tmp"' EXIT
  # Through the environment: awk -v would interpret backslashes in the table.
  TABLE="$generated" awk -v b="$begin" -v e="$end" '
    index($0, e) == 1 { inside = 0 }
    !inside { print }
    index($0, b) == 1 { inside = 1; print ENVIRON["TABLE"] }' "$readme" >"$tmp"
  cat "$tmp" >"$readme"
  echo "$readme: configuration table regenerated"
  exit 0
fi

if [ "$generated" != "$current" ]; then
  echo "$readme's configuration table differs from 'kapso-ingest --help-markdown'" >&2
  echo "(the options are defined in config/options.cpp; regenerate the table with" >&2
  echo " 'cmake --build build --target readme-options'):" >&2
  diff -u <(printf '%s\n' "$current") <(printf '%s\n' "$generated") >&2 || true
  exit 1
fi
echo "$readme's configuration table matches kapso-ingest --help-markdown"
