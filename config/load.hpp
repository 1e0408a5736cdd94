// Command line + CAF config file + environment -> one command and its validated settings.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/actor_system_config.hpp>

#include "config/settings.hpp"

namespace kapso {

// The actor system's config with every option of config/options.cpp
// registered in its section, so CAF reads them from caf-application.ini and
// from the command line as --section.key=value.
class ingest_config : public caf::actor_system_config {
public:
  ingest_config();

  // After parse(): reads the environment, converts and checks every value.
  // Returns "" or a one-line message naming the offending option.
  std::string finish();

  // True when CAF has an option named `name` ("section.key"): its own or ours.
  bool knows(std::string_view name) const;

  settings values;
  workspace_registration workspace;

private:
  // One raw value per option_specs() entry as CAF read it (typed from the
  // INI file, text from the command line); nullopt when not given. Sized once:
  // CAF holds pointers into it.
  std::vector<std::optional<caf::config_value>> given_;
};

// What kapso-ingest was asked to do.
struct command_line {
  std::string command = "serve";         // serve, migrate, register-workspace or spool
  std::string action;                    // spool: list or requeue
  std::unique_ptr<ingest_config> config; // set when `command` is to run
  int exit_code = 0;                     // otherwise: 0 after --help, 2 when invalid
  std::string output;                    // otherwise: print this (stdout if 0, else stderr)
};

// The first argument is the command unless it starts with '-' (`spool` takes
// its action as the second); the rest are options. A bare true/false option means true and "--section.key=" sets an
// empty value (CAF's parser wants a value in both cases).
command_line parse_command_line(int argc, const char* const* argv);

} // namespace kapso
