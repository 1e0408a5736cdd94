// parse_command_line and ingest_config::finish(), in process: typed values reach settings, the
// environment fills what the command line leaves out (and never overrides it), and every refusal
// names its option.
#include <cstdlib>
#include <string>
#include <vector>

#include <boost/test/unit_test.hpp>

#include "config/load.hpp"

using kapso::command_line;

namespace {

command_line parse(std::vector<std::string> args) {
  std::vector<const char*> argv{"kapso-ingest"};
  for (const auto& a : args)
    argv.push_back(a.c_str());
  return kapso::parse_command_line(static_cast<int>(argv.size()), argv.data());
}

// Sets an environment variable for one test and restores it after.
class scoped_env {
public:
  scoped_env(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name))
      old_ = old;
    ::setenv(name, value, 1);
  }
  ~scoped_env() {
    if (old_.empty())
      ::unsetenv(name_);
    else
      ::setenv(name_, old_.c_str(), 1);
  }

private:
  const char* name_;
  std::string old_;
};

} // namespace

BOOST_AUTO_TEST_SUITE(command_line_in_process)

BOOST_AUTO_TEST_CASE(typed_values_reach_the_settings) {
  auto line = parse({"serve", "--http.port=18123", "--http.body-limit=2048",
                     "--persistence.database-url=postgresql://x@127.0.0.1:1/db"});
  BOOST_REQUIRE_MESSAGE(line.config, line.output);
  BOOST_TEST(line.command == "serve");
  BOOST_TEST(line.config->values.port == 18123);
  BOOST_TEST(line.config->values.body_limit == 2048u);
  BOOST_TEST(line.config->values.database_url == "postgresql://x@127.0.0.1:1/db");
}

BOOST_AUTO_TEST_CASE(the_environment_fills_in_but_never_overrides) {
  scoped_env url{"DATABASE_URL", "postgresql://env@127.0.0.1:2/envdb"};
  auto from_env = parse({"migrate"});
  BOOST_REQUIRE_MESSAGE(from_env.config, from_env.output);
  BOOST_TEST(from_env.command == "migrate");
  BOOST_TEST(from_env.config->values.database_url == "postgresql://env@127.0.0.1:2/envdb");
  auto given = parse({"migrate", "--persistence.database-url=postgresql://cli@127.0.0.1:3/c"});
  BOOST_REQUIRE_MESSAGE(given.config, given.output);
  BOOST_TEST(given.config->values.database_url == "postgresql://cli@127.0.0.1:3/c");
}

BOOST_AUTO_TEST_CASE(refusals_exit_2_and_name_the_option) {
  struct refusal {
    std::string argument, option;
  };
  std::vector<refusal> cases{
    {"--http.port=70000", "http.port"},
    {"--http.body-limit=lots", "http.body-limit"},
    {"--nosuch.option=1", "nosuch.option"},
    // A writer's deadline longer than the delivery's: the timeouts must nest.
    {"--persistence.commit-timeout-ms=600000", "commit-timeout-ms"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.argument) {
      auto line = parse({"serve", c.argument});
      BOOST_TEST(!line.config);
      BOOST_TEST(line.exit_code == 2);
      BOOST_TEST(line.output.find(c.option) != std::string::npos, line.output);
    }
  }
}

BOOST_AUTO_TEST_CASE(help_exits_0_with_the_options) {
  auto line = parse({"--help"});
  BOOST_TEST(!line.config);
  BOOST_TEST(line.exit_code == 0);
  BOOST_TEST(line.output.find("--http.body-limit") != std::string::npos);
  BOOST_TEST(line.output.find("--spool.replay-batch-max") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()
