// Registers the options of config/options.cpp with CAF, reads argv and the
// environment, and converts and checks every value.
#include "config/load.hpp"

#include <charconv>
#include <cstdlib>

#include <caf/config_option.hpp>
#include <caf/config_value.hpp>
#include <caf/make_config_option.hpp>

#include "config/options.hpp"
#include "config/secrets.hpp"
#include "config/version.hpp"

namespace kapso {

namespace {

using given_value = std::optional<caf::config_value>;

// CAF's side of every option: any value is kept as given (typed from the INI
// file, text from the command line) and judged by convert() below, so that a
// wrong type is refused with the option's name instead of being dropped.
caf::error accept_any(const caf::config_value&) {
  return caf::none;
}

void store_given(void* slot, const caf::config_value& x) {
  *static_cast<given_value*>(slot) = x;
}

caf::config_value get_given(const void* slot) {
  const auto& given = *static_cast<const given_value*>(slot);
  return given ? *given : caf::config_value{std::string{}};
}

// Command-line text as CAF reads strings: a quoted text is unquoted
// ("\"\"" is the empty text); anything else — a number, a list — is kept
// as written, for the option table to check against its own type.
caf::expected<caf::config_value> read_text(void*, caf::string_view input) {
  auto parsed = caf::config_value::parse(input);
  if (parsed && caf::holds_alternative<std::string>(*parsed))
    return parsed;
  return caf::config_value{std::string{input.begin(), input.end()}};
}

const caf::config_option::meta_state* meta_for(const option_spec& spec) {
  // Not "boolean": CAF would refuse "--flag=false" for its flags.
  static const caf::config_option::meta_state flag{accept_any, store_given, get_given,
                                                    read_text, "true|false"};
  static const caf::config_option::meta_state integer{accept_any, store_given, get_given,
                                                       read_text, "integer"};
  static const caf::config_option::meta_state text{accept_any, store_given, get_given,
                                                    read_text, "text"};
  if (is_flag(spec))
    return &flag;
  return is_integer(spec) ? &integer : &text;
}

caf::string_view caf_view(std::string_view x) {
  return {x.data(), x.size()};
}

std::string section_of(const option_spec& spec) {
  return std::string{spec.name.substr(0, spec.name.find('.'))};
}

std::string shown(const option_spec& spec, const caf::config_value& given) {
  if (spec.secret)
    return "(hidden)";
  if (caf::holds_alternative<std::string>(given))
    return caf::get<std::string>(given);
  return caf::to_string(given);
}

std::string complaint(const option_spec& spec, const caf::config_value& given,
                      const std::string& must) {
  return "invalid configuration: " + std::string{spec.name} + " = " + shown(spec, given)
         + " (must be " + must + ")";
}

std::optional<std::string> as_text(const caf::config_value& x) {
  if (caf::holds_alternative<std::string>(x))
    return caf::get<std::string>(x);
  if (caf::holds_alternative<caf::config_value::integer>(x))
    return std::to_string(caf::get<caf::config_value::integer>(x));
  return std::nullopt;
}

std::optional<int64_t> as_integer(const caf::config_value& x) {
  if (caf::holds_alternative<caf::config_value::integer>(x))
    return caf::get<caf::config_value::integer>(x);
  if (!caf::holds_alternative<std::string>(x))
    return std::nullopt;
  const auto& text = caf::get<std::string>(x);
  int64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || text.empty())
    return std::nullopt;
  return value;
}

std::optional<bool> as_flag(const caf::config_value& x) {
  if (caf::holds_alternative<bool>(x))
    return caf::get<bool>(x);
  auto text = as_text(x);
  if (!text)
    return std::nullopt;
  if (*text == "true" || *text == "1" || *text == "yes" || *text == "on")
    return true;
  if (*text == "false" || *text == "0" || *text == "no" || *text == "off")
    return false;
  return std::nullopt;
}

// Converts `given` into the option's field; "" or the one-line complaint.
std::string convert(const option_spec& spec, const caf::config_value& given, settings& values,
                    workspace_registration& workspace) {
  auto integer = [&](auto assign) -> std::string {
    auto range = std::to_string(spec.min) + " and " + std::to_string(spec.max);
    auto n = as_integer(given);
    if (!n)
      return complaint(spec, given, "an integer between " + range);
    if (*n < spec.min || *n > spec.max)
      return complaint(spec, given, "between " + range);
    assign(*n);
    return {};
  };
  auto text = [&](std::string& out) -> std::string {
    auto value = as_text(given);
    if (!value)
      return complaint(spec, given, "text (quoted in the config file)");
    if (spec.valid != nullptr && !spec.valid(*value))
      return complaint(spec, given, std::string{spec.must});
    out = std::move(*value);
    return {};
  };
  return std::visit(
    overloaded{
      [&](std::string settings::*f) { return text(values.*f); },
      [&](std::string workspace_registration::*f) { return text(workspace.*f); },
      [&](bool settings::*f) -> std::string {
        auto flag = as_flag(given);
        if (!flag)
          return complaint(spec, given, "true or false");
        values.*f = *flag;
        return {};
      },
      [&](uint16_t settings::*f) {
        return integer([&](int64_t n) { values.*f = static_cast<uint16_t>(n); });
      },
      [&](size_t settings::*f) {
        return integer([&](int64_t n) { values.*f = static_cast<size_t>(n); });
      },
      [&](std::chrono::milliseconds settings::*f) {
        return integer([&](int64_t n) { values.*f = std::chrono::milliseconds{n}; });
      },
      [&](std::vector<std::string> settings::*f) -> std::string {
        std::vector<std::string> items;
        if (auto list = caf::get_if<caf::config_value::list>(&given)) {
          for (const auto& item : *list) {
            auto piece = as_text(item);
            if (!piece)
              return complaint(spec, given, "a comma-separated list");
            for (auto& secret : split_secrets(*piece))
              items.push_back(std::move(secret));
          }
        } else if (auto whole = as_text(given)) {
          items = split_secrets(*whole);
        } else {
          return complaint(spec, given, "a comma-separated list");
        }
        values.*f = std::move(items);
        return {};
      },
    },
    spec.field);
}

bool is_empty_text(const caf::config_value& x) {
  return caf::holds_alternative<std::string>(x) && caf::get<std::string>(x).empty();
}

command_line stop(command_line result, int exit_code, std::string output) {
  result.config.reset();
  result.exit_code = exit_code;
  if (!output.empty() && output.back() != '\n')
    output += '\n';
  result.output = std::move(output);
  return result;
}

} // namespace

ingest_config::ingest_config() : given_(option_specs().size()) {
  // CAF's defaults spin worker threads while they look for work; on a small
  // machine shared with PostgreSQL that spinning costs more than it saves.
  // Both stay tunable (--scheduler.max-threads, --work-stealing.*).
  set("scheduler.max-threads", size_t{1});
  set("work-stealing.aggressive-poll-attempts", size_t{1});
  set("work-stealing.moderate-poll-attempts", size_t{1});
  const auto& specs = option_specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    auto dot = spec.name.find('.');
    auto fallback = default_text(spec);
    std::string description{spec.help};
    if (!fallback.empty())
      description += " (default " + fallback + ")";
    if (!spec.env.empty())
      description += " (env " + std::string{spec.env} + ")";
    custom_options_.add(caf::config_option{caf_view(spec.name.substr(0, dot)),
                                           caf_view(spec.name.substr(dot + 1)),
                                           caf_view(description), meta_for(spec), &given_[i]});
  }
}

std::string ingest_config::finish() {
  const auto& specs = option_specs();
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& spec = specs[i];
    auto given = given_[i];
    if (!spec.env.empty() && (!given || is_empty_text(*given))) {
      const char* env = std::getenv(std::string{spec.env}.c_str());
      if (env != nullptr && *env != '\0')
        given = caf::config_value{std::string{env}};
    }
    if (!given)
      continue;
    if (auto problem = convert(spec, *given, values, workspace); !problem.empty())
      return problem;
  }
  // CAF keeps unknown keys of the config file silently; in our sections a
  // misspelt key would be a setting that never applies.
  std::string checked;
  for (const auto& spec : specs) {
    auto section = section_of(spec);
    if (section == checked)
      continue;
    checked = section;
    auto entry = caf::get_if(&content, caf_view(section));
    auto keys = entry != nullptr ? caf::get_if<caf::config_value::dictionary>(entry) : nullptr;
    if (keys == nullptr)
      continue;
    for (const auto& key : *keys)
      if (find_option(section + "." + key.first) == nullptr)
        return "invalid configuration: " + section + "." + key.first
               + " is not an option (kapso-ingest --help lists them)";
  }
  return check_timeouts_nest(values);
}

bool ingest_config::knows(std::string_view name) const {
  return custom_options_.cli_long_name_lookup(caf_view(name)) != nullptr;
}

command_line parse_command_line(int argc, const char* const* argv) {
  command_line result;
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i)
    args.emplace_back(argv[i]);
  if (!args.empty() && !args.front().empty() && args.front()[0] != '-') {
    result.command = args.front();
    args.erase(args.begin());
  }
  for (const auto& arg : args) {
    if (arg == "--help" || arg == "-h" || arg == "-?")
      return stop(std::move(result), 0, help_text());
    if (arg == "--help-markdown")
      return stop(std::move(result), 0, markdown_table());
    if (arg == "--help-ini")
      return stop(std::move(result), 0, ini_file());
    if (arg == "--version")
      return stop(std::move(result), 0, "kapso-ingest " + std::string{kapso_version});
  }
  if (result.command != "serve" && result.command != "migrate"
      && result.command != "repair-route" && result.command != "register-workspace"
      && result.command != "spool")
    return stop(std::move(result), 2,
                "unknown command '" + result.command
                  + "' (expected serve, migrate, repair-route, register-workspace or spool)");
  if (result.command == "spool") {
    if (args.empty() || (args.front() != "list" && args.front() != "requeue"))
      return stop(std::move(result), 2,
                  "usage: kapso-ingest spool list|requeue [--spool.dir=DIR] "
                  "(kapso-ingest --help)");
    result.action = args.front();
    args.erase(args.begin());
  }
  result.config = std::make_unique<ingest_config>();
  auto& cfg = *result.config;
  for (auto& arg : args) {
    if (arg.compare(0, 2, "--") != 0)
      continue;
    auto equals = arg.find('=');
    auto name = arg.substr(2, equals == std::string::npos ? std::string::npos : equals - 2);
    auto spec = find_option(name);
    if (spec == nullptr) {
      if (!cfg.knows(name))
        return stop(std::move(result), 2,
                    "invalid configuration: unknown option --" + name
                      + " (kapso-ingest --help lists every option)");
    } else if (equals == std::string::npos) {
      if (!is_flag(*spec))
        return stop(std::move(result), 2,
                    "invalid configuration: " + name + " needs a value (--" + name + "=...)");
      arg += "=true";
    } else if (equals + 1 == arg.size()) {
      arg += "\"\"";
    }
  }
  if (auto err = cfg.parse(std::move(args)))
    return stop(std::move(result), 2, "invalid configuration: " + caf::to_string(err));
  if (cfg.cli_helptext_printed) // --long-help, --dump-config: CAF printed them
    return stop(std::move(result), 0, "");
  if (!cfg.remainder.empty())
    return stop(std::move(result), 2,
                "invalid configuration: unexpected argument '" + cfg.remainder.front() + "'");
  if (auto problem = cfg.finish(); !problem.empty())
    return stop(std::move(result), 2, problem);
  // The spool commands read and write files only.
  if (result.command == "spool" && cfg.values.spool_dir.empty())
    return stop(std::move(result), 2,
                "invalid configuration: spool.dir is empty (the spool is disabled, so nothing "
                "is quarantined)");
  if (cfg.values.database_url.empty() && result.command != "spool")
    return stop(std::move(result), 2,
                "invalid configuration: persistence.database-url is empty (set DATABASE_URL)");
  if (result.command == "register-workspace" && cfg.workspace.phone_number_id.empty())
    return stop(std::move(result), 2,
                "invalid configuration: workspace.phone-number-id is required");
  return result;
}

} // namespace kapso
