// Command line and configuration: bad options stop start-up naming them; bare invocation serves.
#include <fstream>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sstream>

#include <boost/test/unit_test.hpp>

#include "config/options.hpp"
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
    // Timeouts must nest below Kapso's 10 s; the message names the option to change.
    {"--http.request-timeout-ms=20000", "http.request-timeout-ms"},
    {"--persistence.commit-timeout-ms=20000", "persistence.commit-timeout-ms"},
    {"--router.timeout-ms=5000", "router.timeout-ms"},
    {"--http.request-timeout-ms=4000", "http.request-timeout-ms"},
    // The options of the fault-tolerance work, each out of its range.
    {"--http.max-in-flight-bytes=65535", "http.max-in-flight-bytes"},
    {"--http.max-in-flight-bytes=17179869185", "http.max-in-flight-bytes"},
    {"--http.max-connections=0", "http.max-connections"},
    {"--http.idle-timeout-ms=99", "http.idle-timeout-ms"},
    {"--http.shutdown-timeout-ms=600001", "http.shutdown-timeout-ms"},
    {"--persistence.connect-timeout-ms=60001", "persistence.connect-timeout-ms"},
    {"--router.lookup-rate=0", "router.lookup-rate"},
    {"--router.timeout-ms=49", "router.timeout-ms"},
    // A misspelt or unknown option must not be silently ignored.
    {"--http.prot=8080", "http.prot"},
    {"--nosuch.option=1", "nosuch.option"},
    // An option that needs a value, given bare.
    {"--http.max-connections", "http.max-connections"},
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
      BOOST_TEST(result.exit_code == 2, "output:\n" << result.output);
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

BOOST_AUTO_TEST_CASE(a_port_in_use_stops_start_up_instead_of_hanging) {
  test_database db;
  // Held by a listening socket of this test, as another server would hold it.
  int held = ::socket(AF_INET, SOCK_STREAM, 0);
  BOOST_REQUIRE(held >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  BOOST_REQUIRE(::bind(held, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  BOOST_REQUIRE(::listen(held, 1) == 0);
  socklen_t length = sizeof addr;
  ::getsockname(held, reinterpret_cast<sockaddr*>(&addr), &length);
  auto port = std::to_string(ntohs(addr.sin_port));
  auto result = run_cli({"serve", "--http.host=127.0.0.1", "--http.port=" + port,
                         "--spool.dir=" + make_temp_dir("cli-spool")},
                        {{"DATABASE_URL", db.url()}, {"KAPSO_WEBHOOK_SECRET", "s"}}, 20s);
  ::close(held);
  BOOST_TEST(!result.timed_out, "still running 20 s after its port was found taken");
  BOOST_TEST(result.exit_code != 0, "output:\n" << result.output);
  BOOST_TEST(some_line_names(result.output, port), "output:\n" << result.output);
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

BOOST_AUTO_TEST_CASE(valid_values_of_the_new_options_are_accepted) {
  test_database db;
  server_options options;
  options.name = "new-options";
  options.args = {"--http.max-in-flight-bytes=65536", "--http.max-connections=64",
                  "--http.idle-timeout-ms=3600000", "--http.shutdown-timeout-ms=100",
                  "--persistence.connect-timeout-ms=100", "--router.lookup-rate=1000000",
                  // The nesting rule at its edge: 2000 + 0 + 100 + 5900 + 1500 = 9500.
                  "--router.timeout-ms=2000", "--persistence.commit-timeout-ms=5900",
                  "--http.request-timeout-ms=9500"};
  server_process server{db.url(), options};
  http_client client{server.port()};
  BOOST_TEST(client.get("/healthz").status == 200);
}

BOOST_AUTO_TEST_CASE(help_lists_every_option_without_a_database) {
  auto result = run_cli({"--help"}, {}, 15s);
  BOOST_TEST(!result.timed_out);
  BOOST_TEST(result.exit_code == 0, result.output);
  // The options the other parts of the server read, by name, and then every
  // option of the table (so an option added there cannot miss --help).
  std::vector<std::string> names{
    "http.max-in-flight-bytes", "http.max-connections", "http.idle-timeout-ms",
    "http.shutdown-timeout-ms", "persistence.connect-timeout-ms", "router.lookup-rate",
    "router.timeout-ms", "security.allow-unsigned", "workspace.phone-number-id"};
  for (const auto& spec : kapso::option_specs())
    names.emplace_back(spec.name);
  for (const auto& name : names) {
    bool listed = result.output.find("--" + name + "=") != std::string::npos
                  || result.output.find("--" + name + "[=") != std::string::npos;
    BOOST_TEST(listed, "--help does not list " << name);
  }
  BOOST_TEST(result.output.find("Timeouts nest") != std::string::npos, result.output);

  auto markdown = run_cli({"--help-markdown"}, {}, 15s);
  BOOST_TEST(markdown.exit_code == 0, markdown.output);
  for (const auto& spec : kapso::option_specs())
    BOOST_TEST(markdown.output.find("| `" + std::string{spec.name} + "` |") != std::string::npos,
               "--help-markdown has no row for " << spec.name);
}

BOOST_AUTO_TEST_CASE(a_bare_boolean_flag_means_true) {
  test_database db;
  auto ws = db.insert_workspace();
  kapso_message m;
  m.id = "wamid.bare-flag.1";
  m.phone_number_id = ws.phone_number_id;
  auto body = kapso_event(m).dump();
  auto unsigned_status = [&](const std::vector<std::string>& args) {
    server_options options;
    options.name = "bare-flag";
    options.args = args;
    options.env = {{"KAPSO_WEBHOOK_SECRET", std::nullopt}};
    server_process server{db.url(), options};
    http_client client{server.port()};
    return post_webhook(client, body, std::nullopt).status;
  };
  BOOST_TEST(unsigned_status({}) == 401);
  BOOST_TEST(unsigned_status({"--security.allow-unsigned=false"}) == 401);
  BOOST_TEST(unsigned_status({"--security.allow-unsigned"}) == 200);
}

BOOST_AUTO_TEST_CASE(config_file_values_are_typed_and_checked_by_name) {
  test_database db;
  auto ws = db.insert_workspace();
  auto dir = make_temp_dir("config-typed");
  // An unquoted true is a boolean in CAF's INI syntax; it must still apply.
  auto flag = dir + "/flag.ini";
  {
    std::ofstream ini{flag};
    ini << "[security]\nallow-unsigned=true\n";
  }
  server_options options;
  options.name = "config-flag";
  options.args = {"--config-file=" + flag};
  options.env = {{"KAPSO_WEBHOOK_SECRET", std::nullopt}};
  server_process server{db.url(), options};
  http_client client{server.port()};
  kapso_message m;
  m.id = "wamid.config-flag.1";
  m.phone_number_id = ws.phone_number_id;
  BOOST_TEST(post_webhook(client, kapso_event(m).dump(), std::nullopt).status == 200);

  struct invalid {
    std::string ini;
    std::string option;
  };
  std::vector<invalid> cases{
    {"[http]\nprot=8080\n", "http.prot"},                 // misspelt key
    {"[http]\nthreads=\"two\"\n", "http.threads"},        // text for a number
    {"[http]\nmax-connections=0\n", "http.max-connections"},
    {"[log]\nlevel=3\n", "log.level"},
  };
  for (const auto& c : cases) {
    BOOST_TEST_CONTEXT(c.ini) {
      auto path = dir + "/bad.ini";
      {
        std::ofstream ini{path};
        ini << c.ini;
      }
      auto result = run_cli({"serve", "--http.host=127.0.0.1",
                             "--http.port=" + std::to_string(free_port()),
                             "--config-file=" + path, "--spool.dir=" + make_temp_dir("cli-spool")},
                            {{"DATABASE_URL", db.url()}}, 15s);
      BOOST_TEST(!result.timed_out, "still running after 15 s");
      BOOST_TEST(result.exit_code == 2, result.output);
      BOOST_TEST(some_line_names(result.output, c.option), result.output);
    }
  }
}

BOOST_AUTO_TEST_SUITE_END()
