// Every option defined once; --help, the README table and the checks read this table.
#include "config/options.hpp"

#include <algorithm>
#include <array>

namespace kapso {

namespace {

using ms_field = std::chrono::milliseconds settings::*;

option_spec plain_spec(std::string_view name, option_field field, std::string_view help) {
  option_spec spec;
  spec.name = name;
  spec.field = field;
  spec.help = help;
  return spec;
}

template <class Field>
option_spec ranged(std::string_view name, Field field, int64_t min, int64_t max,
                   std::string_view help) {
  auto spec = plain_spec(name, field, help);
  spec.min = min;
  spec.max = max;
  return spec;
}

option_spec number(std::string_view name, uint16_t settings::*field, int64_t min, int64_t max,
                   std::string_view help) {
  return ranged(name, field, min, max, help);
}

option_spec number(std::string_view name, size_t settings::*field, int64_t min, int64_t max,
                   std::string_view help) {
  return ranged(name, field, min, max, help);
}

option_spec millis(std::string_view name, ms_field field, int64_t min, int64_t max,
                   std::string_view help) {
  return ranged(name, field, min, max, help);
}

option_spec flag(std::string_view name, bool settings::*field, std::string_view help) {
  return plain_spec(name, field, help);
}

template <class Field>
option_spec text(std::string_view name, Field field, std::string_view help) {
  return plain_spec(name, field, help);
}

// Secrets and URLs that may carry a password: given or from the environment.
template <class Field>
option_spec secret(std::string_view name, Field field, std::string_view help,
                   std::string_view env = {}) {
  auto spec = plain_spec(name, field, help);
  spec.env = env;
  spec.secret = true;
  return spec;
}

option_spec rule(std::string_view name, std::string settings::*field,
                 bool (*valid)(std::string_view), std::string_view must,
                 std::string_view help) {
  auto spec = plain_spec(name, field, help);
  spec.valid = valid;
  spec.must = must;
  return spec;
}

bool is_region_code(std::string_view text) {
  return text.size() == 2;
}

bool is_log_level(std::string_view text) {
  static constexpr std::array<std::string_view, 7> levels{
    "trace", "debug", "info", "warn", "error", "critical", "off"};
  return std::find(levels.begin(), levels.end(), text) != levels.end();
}

// Help for a terminal: without Markdown's `code` marks, wrapped under the
// option at `indent` columns so that no line is longer than `width`.
std::string wrapped(std::string_view markdown, size_t indent, size_t width) {
  std::string out;
  size_t column = indent;
  out.append(indent, ' ');
  size_t pos = 0;
  while (pos < markdown.size()) {
    auto end = markdown.find(' ', pos);
    if (end == std::string_view::npos)
      end = markdown.size();
    std::string word;
    for (char c : markdown.substr(pos, end - pos))
      if (c != '`')
        word += c;
    if (column > indent && column + 1 + word.size() > width) {
      out.append("\n").append(indent, ' ');
      column = indent;
    } else if (column > indent) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    pos = end + 1;
  }
  return out + "\n";
}

} // namespace

const std::vector<option_spec>& option_specs() {
  static const std::vector<option_spec> specs{
    text("http.host", &settings::host, "listen address"),
    number("http.port", &settings::port, 0, 65535, "listen port"),
    number("http.threads", &settings::http_threads, 1, 64, "RESTinio I/O threads"),
    number("http.body-limit", &settings::body_limit, 64, 256ll << 20,
           "largest body in bytes: a larger `Content-Length` is answered `413` from the headers "
           "(the body is never read), a chunked body is cut there"),
    number("http.max-in-flight", &settings::max_in_flight, 1, 1000000,
           "deliveries in the pipeline before `503`"),
    number("http.max-in-flight-bytes", &settings::max_in_flight_bytes, 64ll << 10, 16ll << 30,
           "memory bound of the HTTP layer: bytes of bodies being read plus twice the bodies of "
           "the deliveries waiting (request and parsed copy); a body without room is answered "
           "`503` from its headers"),
    number("http.max-connections", &settings::max_connections, 1, 1000000,
           "most open client connections; the server lowers it below the descriptor limit at "
           "start"),
    millis("http.idle-timeout-ms", &settings::idle_timeout, 100, 3600000,
           "a connection that sends no complete request for this long is closed"),
    millis("http.request-timeout-ms", &settings::request_timeout, 100, 9500,
           "a delivery's deadline: HTTP handling time, below Kapso's 10 s (then `503`)"),
    millis("http.shutdown-timeout-ms", &settings::shutdown_timeout, 100, 600000,
           "on SIGTERM, the most time spent answering waiting requests before exit"),

    secret("security.secrets", &settings::webhook_secrets,
           "global webhook secrets, comma-separated (several during rotation)",
           "KAPSO_WEBHOOK_SECRET"),
    secret("security.verify-token", &settings::verify_token,
           "token for `GET` verification (none: any challenge is answered)",
           "KAPSO_VERIFY_TOKEN"),
    flag("security.allow-unsigned", &settings::allow_unsigned,
         "accept requests when no secret applies"),

    millis("router.timeout-ms", &settings::workspace_lookup_timeout, 50, 9000,
           "deadline of one workspace look-up"),
    number("router.lookup-rate", &settings::lookup_rate, 1, 1000000,
           "database look-ups per second of `phone_number_id`s not in the workspace cache, for "
           "deliveries whose signature matches no global secret"),
    millis("router.workspace-cache-ttl-ms", &settings::workspace_cache_ttl, 0, 1000,
           "workspace cache lifetime: a new workspace works after at most this"),
    millis("router.unknown-log-period-ms", &settings::unknown_log_period, 0, 86400000,
           "log each unknown `phone_number_id` once per period"),

    millis("conversation.idle-ms", &settings::conversation_idle, 10, 86400000,
           "a writer forgets a conversation (its recently committed message ids) after this "
           "idle time"),
    number("conversation.max", &settings::conversation_max, 0, 10000000,
           "most conversations whose recent message ids the writers remember (beyond: a retry "
           "costs a database probe)"),

    secret("persistence.database-url", &settings::database_url,
           "PostgreSQL URL or libpq connection string (required)", "DATABASE_URL"),
    number("persistence.writers", &settings::writers, 1, 64,
           "persistence actors, one connection each, each owning a fixed share of the "
           "conversations"),
    number("persistence.batch-max", &settings::batch_max, 1, 100000,
           "most events per transaction"),
    millis("persistence.flush-interval-ms", &settings::flush_interval, 0, 1000,
           "extra wait before a commit; `0` = commit as soon as the queued writes are taken"),
    millis("persistence.statement-timeout-ms", &settings::statement_timeout, 10, 60000,
           "PostgreSQL `statement_timeout`"),
    millis("persistence.commit-timeout-ms", &settings::commit_timeout, 10, 60000,
           "time a batch may take before it is spooled"),
    millis("persistence.connect-timeout-ms", &settings::connect_timeout, 100, 60000,
           "deadline of one connection attempt"),
    flag("persistence.migrate-on-start", &settings::migrate_on_start,
         "apply migrations when serving starts: in the background once the server listens, "
         "retried until they succeed (`/readyz` is `503` and batches are spooled until then)"),
    millis("persistence.migration-timeout-ms", &settings::migration_timeout, 100, 3600000,
           "limit of one migration run (`migrate`, each attempt at start): PostgreSQL's "
           "statement and lock timeouts (the wait for the migration lock included); a "
           "database that does not answer is given up 1 s later"),

    text("spool.dir", &settings::spool_dir, "outage spool directory; empty disables the spool"),
    number("spool.max-bytes", &settings::spool_max_bytes, 0, 1ll << 50,
           "spool size limit, shared by the writers (`503` when full)"),
    millis("spool.replay-interval-ms", &settings::spool_replay_interval, 10, 3600000,
           "replay attempts while the spool is not empty"),
    number("spool.replay-batch-max", &settings::spool_replay_batch_max, 1, 100000,
           "most spooled events per replay transaction; live batches are committed between "
           "two of them"),
    number("spool.quarantine-after", &settings::spool_quarantine_after, 1, 1000,
           "an event whose write fails for no reason of its data or of the database's state "
           "(a trigger's or internal error) this many times, each while others of its kind "
           "are stored, moves from the spool to `spool.dir/writer-N.quarantine` "
           "(`kapso-ingest spool list`)"),

    rule("phone.default-region", &settings::default_region, is_region_code,
         "a two-letter region code such as US", "region for numbers without a country code"),

    rule("log.level", &settings::log_level, is_log_level,
         "trace, debug, info, warn, error, critical or off",
         "log threshold; `debug` logs one line per delivery"),

    text("workspace.name", &workspace_registration::name, "`register-workspace`: its name"),
    text("workspace.slug", &workspace_registration::slug,
         "`register-workspace`: its unique slug"),
    text("workspace.phone-number-id", &workspace_registration::phone_number_id,
         "`register-workspace`: Kapso's `phone_number_id` of its number (required)"),
    secret("workspace.secret", &workspace_registration::secret,
           "`register-workspace`: its own webhook secret (optional)"),
  };
  return specs;
}

const option_spec* find_option(std::string_view name) {
  const auto& specs = option_specs();
  auto found = std::find_if(specs.begin(), specs.end(),
                            [name](const option_spec& spec) { return spec.name == name; });
  return found == specs.end() ? nullptr : &*found;
}

bool is_integer(const option_spec& spec) {
  return std::holds_alternative<uint16_t settings::*>(spec.field)
         || std::holds_alternative<size_t settings::*>(spec.field)
         || std::holds_alternative<ms_field>(spec.field);
}

bool is_flag(const option_spec& spec) {
  return std::holds_alternative<bool settings::*>(spec.field);
}

std::string default_text(const option_spec& spec) {
  static const settings values{};
  static const workspace_registration workspace{};
  return std::visit(
    overloaded{
      [](std::string settings::*f) { return values.*f; },
      [](bool settings::*f) { return std::string{values.*f ? "true" : "false"}; },
      [](uint16_t settings::*f) { return std::to_string(values.*f); },
      [](size_t settings::*f) { return std::to_string(values.*f); },
      [](ms_field f) { return std::to_string((values.*f).count()); },
      [](std::vector<std::string> settings::*f) {
        std::string joined;
        for (const auto& item : values.*f)
          joined += (joined.empty() ? "" : ",") + item;
        return joined;
      },
      [](std::string workspace_registration::*f) { return workspace.*f; },
    },
    spec.field);
}

std::string accepted_text(const option_spec& spec) {
  if (is_integer(spec))
    return std::to_string(spec.min) + ".." + std::to_string(spec.max);
  if (is_flag(spec))
    return "true or false";
  if (std::holds_alternative<std::vector<std::string> settings::*>(spec.field))
    return "comma-separated list";
  if (!spec.must.empty())
    return std::string{spec.must};
  return "text";
}

namespace {

// The deadlines inside one delivery's HTTP deadline: the workspace look-up,
// the wait for a batch, a reconnect (after a fresh connection a commit gets
// its whole allowance again) and the commit; and the margin left for the
// rest of the way (the look-up's answer margin, parse, route, answer).
struct inner_deadline {
  std::string_view name;
  ms_field field;
};
constexpr std::array<inner_deadline, 4> inner_deadlines{{
  {"router.timeout-ms", &settings::workspace_lookup_timeout},
  {"persistence.flush-interval-ms", &settings::flush_interval},
  {"persistence.connect-timeout-ms", &settings::connect_timeout},
  {"persistence.commit-timeout-ms", &settings::commit_timeout},
}};
constexpr int64_t timeout_margin_ms = 1000 + lookup_answer_margin.count();

int64_t request_timeout_max() {
  return find_option("http.request-timeout-ms")->max;
}

} // namespace

std::string timeouts_nest_rule() {
  std::string rule;
  for (const auto& d : inner_deadlines)
    rule += std::string{d.name} + " + ";
  return rule + std::to_string(timeout_margin_ms) + " <= http.request-timeout-ms <= "
         + std::to_string(request_timeout_max());
}

std::string check_timeouts_nest(const settings& values) {
  static const settings defaults{};
  int64_t needed = timeout_margin_ms;
  std::string sum;
  for (const auto& d : inner_deadlines) {
    needed += (values.*d.field).count();
    sum += std::string{d.name} + " " + std::to_string((values.*d.field).count()) + " + ";
  }
  auto request = values.request_timeout.count();
  if (needed <= request)
    return {};
  // The option to change is the inner one raised most above its default; when
  // none was raised, the request timeout was lowered too far.
  const inner_deadline* raised = nullptr;
  int64_t most = 0;
  for (const auto& d : inner_deadlines) {
    auto above = (values.*d.field).count() - (defaults.*d.field).count();
    if (above > most) {
      most = above;
      raised = &d;
    }
  }
  auto request_max = request_timeout_max();
  std::string name{"http.request-timeout-ms"};
  auto value = request;
  std::string fix;
  if (raised != nullptr) {
    name = raised->name;
    value = (values.*raised->field).count();
    fix = "lower " + name;
    if (needed <= request_max)
      fix += " or raise http.request-timeout-ms to " + std::to_string(needed);
  } else if (needed <= request_max) {
    fix = "raise http.request-timeout-ms to " + std::to_string(needed);
  } else {
    fix = "lower router.timeout-ms, persistence.flush-interval-ms or "
          "persistence.commit-timeout-ms";
  }
  return "invalid configuration: " + name + " = " + std::to_string(value)
         + " (timeouts must nest: " + sum + std::to_string(timeout_margin_ms) + " = "
         + std::to_string(needed) + " exceeds http.request-timeout-ms "
         + std::to_string(request) + ", itself at most " + std::to_string(request_max)
         + " as Kapso gives up at 10 s; " + fix + ")";
}

std::string help_text() {
  std::string out =
    "Usage:\n"
    "  kapso-ingest [serve] [options]   serve HTTP (the default command)\n"
    "  kapso-ingest migrate [options]   apply the SQL migrations and exit (on the Next.js\n"
    "                                   route's database, repairing its data first)\n"
    "  kapso-ingest repair-route [options]\n"
    "                                   repair again what the route wrote after `migrate`\n"
    "                                   (once it gets no more deliveries; servers may run)\n"
    "  kapso-ingest register-workspace --workspace.phone-number-id=ID [--workspace.name=N]\n"
    "      [--workspace.slug=S] [--workspace.secret=X] [options]\n"
    "                                   add or update a workspace and print its id\n"
    "  kapso-ingest spool list [--spool.dir=DIR]\n"
    "                                   print the quarantined events (also beside a server)\n"
    "  kapso-ingest spool requeue [--spool.dir=DIR]\n"
    "                                   move them back into the spool for replay (with no\n"
    "                                   server running on DIR: it replays them at its start)\n"
    "  kapso-ingest --help | --help-markdown | --help-ini | --version\n"
    "\n"
    "Options come from caf-application.ini in the working directory (or --config-file=PATH),\n"
    "as key=value under [section], and from the command line as --section.key=value, which\n"
    "wins. A true/false option given bare means true; --section.key= sets an empty value.\n"
    "CAF's own options (e.g. --scheduler.max-threads=N) apply as well: --long-help lists them.\n";
  std::string_view section;
  for (const auto& spec : option_specs()) {
    auto this_section = spec.name.substr(0, spec.name.find('.'));
    if (this_section != section) {
      section = this_section;
      out.append("\n").append(section).append(":\n");
    }
    out.append("  --").append(spec.name).append(is_flag(spec) ? "[=<" : "=<")
      .append(accepted_text(spec)).append(is_flag(spec) ? ">]" : ">");
    auto fallback = default_text(spec);
    std::string origin;
    if (!fallback.empty())
      origin = "default " + fallback;
    if (!spec.env.empty())
      origin += (origin.empty() ? "" : ", ") + std::string{"env "} + std::string{spec.env};
    if (!origin.empty())
      out.append("  (").append(origin).append(")");
    out.append("\n").append(wrapped(spec.help, 6, 96));
  }
  out.append("\nTimeouts nest, as Kapso gives up at 10 s:\n")
    .append(wrapped(timeouts_nest_rule(), 2, 96));
  return out;
}

std::string markdown_table() {
  std::string out = "| option | default | accepts | meaning |\n|---|---|---|---|\n";
  for (const auto& spec : option_specs()) {
    auto fallback = default_text(spec);
    std::string shown;
    if (!fallback.empty())
      shown = "`" + fallback + "`";
    if (!spec.env.empty())
      shown += (shown.empty() ? "" : ", ") + std::string{"env `"} + std::string{spec.env} + "`";
    if (shown.empty())
      shown = "empty";
    out.append("| `").append(spec.name).append("` | ").append(shown).append(" | ")
      .append(accepted_text(spec)).append(" | ").append(spec.help).append(" |\n");
  }
  out.append("\nTimeouts nest: `").append(timeouts_nest_rule())
    .append("`, as Kapso gives up at 10 s; start-up refuses a configuration where they do not.\n");
  return out;
}

std::string ini_file() {
  std::string out =
    "; /etc/kapso-ingest/caf-application.ini: kapso-ingest's options (CAF INI format), written\n"
    "; by `kapso-ingest --help-ini` from the same table as --help and the README.\n"
    ";\n"
    "; Every option is listed with its default, commented out: uncomment a line to change it.\n"
    "; A --section.name=value on the command line wins over this file. Text values are quoted.\n"
    ";\n"
    "; Secrets and the database URL do not belong here: put DATABASE_URL, KAPSO_WEBHOOK_SECRET\n"
    "; (comma-separated during a rotation) and KAPSO_VERIFY_TOKEN in\n"
    "; /etc/kapso-ingest/environment (mode 0640, group kapso-ingest).\n"
    ";\n";
  auto comment_lines = [&out](const std::string& text) {
    auto lines = wrapped(text, 0, 92);
    size_t pos = 0;
    while (pos < lines.size()) {
      auto end = lines.find('\n', pos);
      out.append("; ").append(lines, pos, end - pos).append("\n");
      pos = end + 1;
    }
  };
  comment_lines("Timeouts nest, as Kapso gives up at 10 s; start-up refuses a configuration where "
                "they do not: " + timeouts_nest_rule());
  std::string_view section;
  for (const auto& spec : option_specs()) {
    auto this_section = spec.name.substr(0, spec.name.find('.'));
    if (this_section != section) {
      section = this_section;
      out.append("\n[").append(section).append("]\n");
    }
    std::string note{spec.help};
    note += " (" + accepted_text(spec);
    if (!spec.env.empty())
      note += "; default: env " + std::string{spec.env};
    note += ")";
    comment_lines(note);
    out.append(";").append(spec.name.substr(spec.name.find('.') + 1)).append(" = ");
    auto value = default_text(spec);
    if (is_integer(spec) || is_flag(spec))
      out.append(value);
    else
      out.append("\"").append(value).append("\"");
    out.append("\n");
  }
  return out;
}

} // namespace kapso
