#!/usr/bin/env bash
# The Debian package: builds it with CPack, then checks its files, control data, maintainer
# scripts, the extracted binary, the man page, the commented configuration against
# --long-help and the README, and the systemd unit with systemd-analyze in a scratch root.
#   tests/cluster/package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail

build="$(cd "$1" && pwd -P)" src="$(cd "$2" && pwd -P)"
failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
need() { command -v "$1" >/dev/null || { echo "FAIL: $1 is not installed ($2)" >&2; exit 1; }; }
need cpack cmake
need dpkg-deb dpkg
need systemd-analyze systemd
need man man-db

# --- build ---------------------------------------------------------------------------
rm -f "$build"/package/kapso-ingest_*.deb
(cd "$build" && cpack -G DEB --config CPackConfig.cmake >"$build/package-test.log" 2>&1) \
  || { cat "$build/package-test.log" >&2; echo "FAIL: cpack -G DEB failed" >&2; exit 1; }
debs=("$build"/package/kapso-ingest_*_*.deb)
if [ "${#debs[@]}" -ne 1 ] || [ ! -f "${debs[0]}" ]; then
  echo "FAIL: no single .deb in $build/package" >&2
  exit 1
fi
deb="${debs[0]}"
echo "built $deb ($(stat -c %s "$deb") bytes)"

# --- file list -----------------------------------------------------------------------
listing="$(dpkg-deb -c "$deb" | awk '{ print $1, $2, $6 }')"
expect_file() { # MODE OWNER PATH
  grep -qxF -- "$1 $2 $3" <<<"$listing" || fail "the package lacks '$1 $2 $3'"
}
expect_file -rwxr-xr-x root/root ./usr/bin/kapso-ingest
expect_file -rw-r--r-- root/root ./lib/systemd/system/kapso-ingest.service
expect_file -rw-r--r-- root/root ./etc/kapso-ingest/caf-application.ini
expect_file -rw-r----- root/root ./etc/kapso-ingest/environment
expect_file -rw-r--r-- root/root ./usr/share/man/man1/kapso-ingest.1.gz
expect_file -rw-r--r-- root/root ./usr/share/doc/kapso-ingest/README.md
expect_file -rw-r--r-- root/root ./usr/share/doc/kapso-ingest/examples/haproxy.cfg
expect_file -rw-r--r-- root/root ./usr/share/doc/kapso-ingest/examples/kapso-ingest.rules.yml
expect_file -rw-r--r-- root/root ./usr/share/doc/kapso-ingest/examples/kapso-ingest.json
# Nothing of the build or test tree leaks in.
unexpected="$(grep -vE ' \./(usr/bin/kapso-ingest|lib/systemd/system/kapso-ingest\.service|etc/kapso-ingest/.*|usr/share/(man/man1/kapso-ingest\.1\.gz|doc/kapso-ingest/.*)|([a-z0-9]+/)*)$' <<<"$listing" || true)"
[ -z "$unexpected" ] || fail "unexpected files in the package:"$'\n'"$unexpected"

# --- control data --------------------------------------------------------------------
control="$(dpkg-deb -f "$deb")"
depends="$(dpkg-deb -f "$deb" Depends)"
for dep in adduser libpq5 libcaf-core libsystemd0 libssl3 libjemalloc2 libphonenumber; do
  grep -q "$dep" <<<"$depends" || fail "Depends lacks $dep (shlibdeps): $depends"
done
grep -q '^Package: kapso-ingest$' <<<"$control" || fail "wrong Package field"
scratch="$build/test-tmp/deb-root"
rm -rf "$scratch" "$build/test-tmp/deb-control"
mkdir -p "$scratch" "$build/test-tmp/deb-control"
dpkg-deb -e "$deb" "$build/test-tmp/deb-control"
control_dir="$build/test-tmp/deb-control"
[ "$(cat "$control_dir/conffiles")" = $'/etc/kapso-ingest/caf-application.ini\n/etc/kapso-ingest/environment' ] \
  || fail "conffiles: $(tr '\n' ' ' <"$control_dir/conffiles")"
for script in postinst prerm postrm; do
  [ -x "$control_dir/$script" ] || fail "no executable $script"
  sh -n "$control_dir/$script" || fail "$script does not parse"
done
grep -q 'adduser --system --group' "$control_dir/postinst" || fail "postinst creates no system user"
grep -q 'install -d -o kapso-ingest -g kapso-ingest -m 0700 /var/lib/kapso-ingest' \
  "$control_dir/postinst" || fail "postinst does not create /var/lib/kapso-ingest 0700"

# --- extracted files -------------------------------------------------------------------
dpkg-deb -x "$deb" "$scratch"
binary="$scratch/usr/bin/kapso-ingest"
missing_libs="$(ldd "$binary" | grep 'not found' || true)"
[ -z "$missing_libs" ] || fail "the packaged binary lacks libraries: $missing_libs"
help="$("$binary" --long-help 2>&1 || true)"
grep -q -- '--http.port' <<<"$help" || fail "the packaged binary does not print its options"
if file "$binary" | grep -q 'not stripped'; then fail "the packaged binary is not stripped"; fi

# Every kapso-ingest option (CAF's own sections aside) of --long-help: in the man page and,
# with its default, in the commented caf-application.ini; and nothing else in the ini.
caf='^(global|logger|middleman|opencl|openssl|scheduler|stream|work-stealing)\.'
options="$(grep -oE -- '--[a-z0-9-]+\.[a-z0-9-]+' <<<"$help" | sed 's/^--//' | grep -vE "$caf" | sort -u)"
[ "$(wc -l <<<"$options")" -ge 20 ] || fail "too few options found in --long-help"
manpage="$(MANWIDTH=200 man -l "$scratch/usr/share/man/man1/kapso-ingest.1.gz" 2>&1)"
man_warnings="$(LC_ALL=C.UTF-8 MANROFFSEQ='' MANWIDTH=200 man --warnings -l \
  "$scratch/usr/share/man/man1/kapso-ingest.1.gz" 2>&1 >/dev/null || true)"
[ -z "$man_warnings" ] || fail "man page warnings: $man_warnings"
ini="$scratch/etc/kapso-ingest/caf-application.ini"
ini_options="$(awk '
  /^\[[a-z0-9-]+\]/ { section = substr($0, 2, length($0) - 2); next }
  /^;?[a-z0-9-]+ = / { key = $0; sub(/^;/, "", key); sub(/ = .*/, "", key); print section "." key }
' "$ini" | sort -u)"
while read -r option; do
  grep -q -- "--$option" <<<"$manpage" || fail "the man page lacks --$option"
  grep -qxF "$option" <<<"$ini_options" || fail "caf-application.ini lacks $option"
done <<<"$options"
while read -r option; do
  grep -qxF "$option" <<<"$options" || fail "caf-application.ini has $option, which --long-help does not know"
done <<<"$ini_options"
if grep -qE '^[a-z0-9-]+ = ' "$ini"; then fail "caf-application.ini sets an option (all must be commented)"; fi
# The defaults in the ini are the README's (its configuration table: | `name` | `default` |).
# shellcheck disable=SC2016  # the backquotes are Markdown, not shell
while IFS='|' read -r _ name default _; do
  name="$(sed -E 's/^ *`([^`]*)` *$/\1/' <<<"$name")"
  default="$(sed -E 's/^ *`([^`]*)` *$/\1/' <<<"$default")"
  grep -qxF "$name" <<<"$ini_options" || continue
  case "$default" in *' '*|'') continue ;; esac
  section="${name%%.*}" key="${name#*.}"
  value="$(awk -v s="[$section]" -v k="$key" '
    $0 == s { in_section = 1; next } /^\[/ { in_section = 0 }
    in_section && index($0, ";" k " = ") == 1 { v = substr($0, length(k) + 5); gsub(/"/, "", v); print v }
  ' "$ini")"
  [ "$value" = "$default" ] || fail "caf-application.ini: $name = '$value', README says '$default'"
done < <(grep -E '^\| `[a-z0-9-]+\.[a-z0-9-]+` \|' "$src/README.md")

# --- the unit ---------------------------------------------------------------------------
unit="$scratch/lib/systemd/system/kapso-ingest.service"
for line in Type=notify Restart=on-failure User=kapso-ingest ProtectSystem=strict \
            ReadWritePaths=/var/lib/kapso-ingest NoNewPrivileges=yes PrivateTmp=yes \
            ExecStart=/usr/bin/kapso-ingest; do
  grep -qE "^${line}( |\$)" "$unit" || fail "the unit lacks $line"
done
# The stop timeout must cover the drain (http.request-timeout-ms) and the last commit
# (persistence.statement-timeout-ms).
stop_s="$(sed -nE 's/^TimeoutStopSec=([0-9]+)s?$/\1/p' "$unit")"
drain_ms="$(sed -nE 's/^;request-timeout-ms = ([0-9]+)$/\1/p' "$ini")"
statement_ms="$(sed -nE 's/^;statement-timeout-ms = ([0-9]+)$/\1/p' "$ini")"
if [ -z "$stop_s" ] || [ -z "$drain_ms" ] || [ -z "$statement_ms" ] \
    || [ $((stop_s * 1000)) -le $((drain_ms + statement_ms)) ]; then
  fail "TimeoutStopSec=${stop_s:-?}s does not cover ${drain_ms:-?} ms of drain + ${statement_ms:-?} ms"
fi
# systemd-analyze resolves the unit's dependencies from the root it is given: the scratch
# root gets the host's targets and slices next to the packaged files.
mkdir -p "$scratch/usr/lib/systemd/system"
cp -a /usr/lib/systemd/system/*.target /usr/lib/systemd/system/*.slice "$scratch/usr/lib/systemd/system/" 2>/dev/null || true
verify="$(cd / && systemd-analyze --root="$scratch" verify --man=no "$unit" 2>&1)" \
  || fail "systemd-analyze verify failed: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify complains: $verify"
security="$(cd / && systemd-analyze security --offline=true --threshold=20 --root="$scratch" "$unit" 2>&1)" \
  || fail "systemd-analyze security: exposure above 2.0: $(tail -n1 <<<"$security")"
tail -n1 <<<"$security"

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "package checks passed"
