// Command line and configuration: bad options stop start-up naming them; bare invocation serves.
#include <fstream>
#include <sstream>

#include <boost/test/unit_test.hpp>

#include "tests/integration/harness.hpp"

using namespace kapso_test;

namespace {

// True when one line of `output` names `option` (the "one-line message").
bool some_line_names(const std::string& output, const std::string& option) {
  std::istringstream lines{output};
  std::string line;
  while (std::getline(lines, line))
    if (line.find(option) != std::string::npos)
      return true;
  return false;
}

} // namespace

BOOST_AUTO_TEST_SUITE(command_line)

BOOST_AUTO_TEST_CASE(invalid_option_values_stop_start_up_naming_the_option) {
  test_database db;
  struct invalid {
    std::string argument;
    std::string option;
  };
  std::vector<invalid> cases{
    {"--http.port=not-a-port", "http.port"},
    {"--http.port=70000", "http.port"},
    {"--http.body-limit=lots", "http.body-limit"},
    {"--http.body-limit=0", "http.body-limit"},
    {"--http.max-in-flight=0", "http.max-in-flight"},
    {"--persistence.writers=0", "persistence.writers"},
    {"--persistence.batch-max=0", "persistence.batch-max"},
    {"--persistence.flush-interval-ms=-5", "persistence.flush-interval-ms"},
    {"--security.allow-unsigned=perhaps", "security.allow-unsigned"},
    {"--phone.default-region=not-a-region", "phone.default-region"},
    {"--log.level=loudest", "log.level"},
    // Timeouts must nest below Kapso's 10 s.
    {"--http.request-timeout-ms=20000", "http.request-timeout-ms"},
    {"--persistence.commit-timeout-ms=20000", "persistence.commit-timeout-ms"},
    // A misspelt option must not be silently ignored.
    {"--http.prot=8080", "http.prot"},
  };
  for (auto& c : cases) {
    BOOST_TEST_CONTEXT(c.argument) {
      // A free port and a working database: only the option can be the problem.
      std::vector<std::string> args{"serve", "--http.host=127.0.0.1",
                                    "--spool.dir=" + make_temp_dir("cli-spool")};
      if (c.option != "http.port")
        args.push_back("--http.port=" + std::to_string(free_port()));
      args.push_back(c.argument);
      auto result = run_cli(args,
                            {{"DATABASE_URL", db.url()}, {"KAPSO_WEBHOOK_SECRET", "s"}}, 15s);
      BOOST_TEST(!result.timed_out, "still running after 15 s: it did not refuse the option");
      BOOST_TEST(result.exit_code != 0);
      BOOST_TEST(some_line_names(result.output, c.option), "output:\n" << result.output);
    }
  }
}

BOOST_AUTO_TEST_CASE(config_file_sets_options_and_is_validated) {
  test_database db;
  auto ws = db.insert_workspace();
  auto dir = make_temp_dir("config");
  auto good = dir + "/good.ini";
  {
    std::ofstream ini{good};
    ini << "[http]\nbody-limit=2048\n";
  }
  server_options options;
  options.name = "config-file";
  options.args = {"--config-file=" + good};
  server_process server{db.url(), options};
  kapso_message m;
  m.id = "wamid.config.1";
  m.phone_number_id = ws.phone_number_id;
  m.text = std::string(1500, 'z'); // twice in the body: over 2048 bytes
  http_client client{server.port()};
  auto response = post_webhook(client, kapso_event(m).dump());
  BOOST_TEST(response.status == 413, response.body);

  auto bad = dir + "/bad.ini";
  {
    std::ofstream ini{bad};
    ini << "[persistence]\nwriters=0\n";
  }
  auto result = run_cli({"serve", "--http.host=127.0.0.1",
                         "--http.port=" + std::to_string(free_port()), "--config-file=" + bad,
                         "--spool.dir=" + make_temp_dir("cli-spool")},
                        {{"DATABASE_URL", db.url()}}, 15s);
  BOOST_TEST(!result.timed_out, "still running after 15 s with writers=0 in the config file");
  BOOST_TEST(result.exit_code != 0);
  BOOST_TEST(some_line_names(result.output, "writers"), result.output);
}

BOOST_AUTO_TEST_CASE(migrate_without_a_database_url_fails) {
  auto result = run_cli({"migrate"}, {}, 30s);
  BOOST_TEST(!result.timed_out);
  BOOST_TEST(result.exit_code != 0, result.output);
  BOOST_TEST(!result.output.empty(), "no message explains the failure");
}

BOOST_AUTO_TEST_CASE(migrate_against_an_unreachable_database_fails) {
  // Port 9 (discard) on loopback: nothing listens there.
  auto result = run_cli(
    {"migrate", "--persistence.database-url=postgresql://postgres@127.0.0.1:9/x"}, {}, 60s);
  BOOST_TEST(!result.timed_out);
  BOOST_TEST(result.exit_code != 0, result.output);
}

BOOST_AUTO_TEST_CASE(bare_invocation_serves) {
  test_database db;
  auto ws = db.insert_workspace();
  // No "serve": it is the default command.
  server_options options;
  options.name = "bare";
  options.command = "";
  server_process server{db.url(), options};
  http_client client{server.port()};
  BOOST_TEST(client.get("/healthz").status == 200);
  kapso_message m;
  m.id = "wamid.bare.1";
  m.phone_number_id = ws.phone_number_id;
  auto response = post_webhook(client, kapso_event(m).dump());
  BOOST_TEST(response.status == 200, response.body);
}

BOOST_AUTO_TEST_SUITE_END()
