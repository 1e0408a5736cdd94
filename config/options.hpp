// The one definition of every kapso-ingest option, and the documents made from it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "config/settings.hpp"

namespace kapso {

// The field an option fills. Its C++ type is the option's type (text, true/false,
// integer, milliseconds, comma-separated list) and its initialiser the default.
using option_field
  = std::variant<std::string settings::*, bool settings::*, uint16_t settings::*,
                 size_t settings::*, std::chrono::milliseconds settings::*,
                 std::vector<std::string> settings::*, std::string workspace_registration::*>;

struct option_spec {
  std::string_view name;  // "section.key": [section] key=... in the INI file, --section.key=...
  option_field field;
  std::string_view help;  // one line (Markdown: `code` only)
  int64_t min = 0;        // integers: the accepted range, inclusive
  int64_t max = 0;
  // Text: the rule a value must follow, and what to tell when it does not.
  bool (*valid)(std::string_view) = nullptr;
  std::string_view must;
  std::string_view env;   // read when the option is not given or empty
  bool secret = false;    // its value is never repeated in messages
};

// Visits an option_field with one lambda per field type.
template <class... Fs>
struct overloaded : Fs... {
  using Fs::operator()...;
};
template <class... Fs>
overloaded(Fs...) -> overloaded<Fs...>;

// Every option, grouped by section, in the order --help shows them.
const std::vector<option_spec>& option_specs();

// The option named "section.key", or nullptr.
const option_spec* find_option(std::string_view name);

// Integer-valued fields (ports, sizes, counts, milliseconds).
bool is_integer(const option_spec& spec);
bool is_flag(const option_spec& spec);

// The default as an operator would type it ("" for an empty text).
std::string default_text(const option_spec& spec);

// What the option accepts, e.g. "0 – 65535", "true or false", "two-letter...".
std::string accepted_text(const option_spec& spec);

// Cross-option rule: timeouts nest inside Kapso's 10 s, so an inner deadline
// is reported before an outer layer gives up. "" or the one-line complaint
// naming the option to change.
std::string check_timeouts_nest(const settings& values);
std::string timeouts_nest_rule(); // the same rule, for --help and the README

// `kapso-ingest --help`: commands, then every option with default and range.
std::string help_text();

// `kapso-ingest --help-markdown`: the README's configuration table.
std::string markdown_table();

// `kapso-ingest --help-ini`: every option commented out with its default, the
// packaged /etc/kapso-ingest/caf-application.ini.
std::string ini_file();

} // namespace kapso
