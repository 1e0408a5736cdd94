// The timeouts of one delivery nest below Kapso's 10 s: every inner deadline
// (look-up and its answer margin, flush, reconnect, commit) is counted, and
// the refusal names the option to change.
#include "config/options.hpp"

#include <boost/test/unit_test.hpp>

#include "config/settings.hpp"

using namespace kapso;
using namespace std::chrono_literals;

BOOST_AUTO_TEST_SUITE(timeouts_nest)

BOOST_AUTO_TEST_CASE(the_defaults_nest) {
  BOOST_TEST(check_timeouts_nest(settings{}) == "");
}

BOOST_AUTO_TEST_CASE(every_inner_deadline_and_the_margins_are_counted) {
  settings s;
  s.request_timeout = 9500ms;
  s.workspace_lookup_timeout = 2000ms;
  s.flush_interval = 0ms;
  s.connect_timeout = 100ms;
  s.commit_timeout = 5900ms; // 2000 + 500 + 0 + 100 + 5900 + 1000 = 9500
  BOOST_TEST(check_timeouts_nest(s) == "");
  s.commit_timeout = 5901ms;
  BOOST_TEST(check_timeouts_nest(s) != "");
}

BOOST_AUTO_TEST_CASE(a_reconnect_counts_because_a_commit_after_it_gets_its_whole_allowance) {
  settings s;
  s.connect_timeout = 5000ms; // 1000 + 500 + 0 + 5000 + 3000 + 1000 > 8000
  auto problem = check_timeouts_nest(s);
  BOOST_TEST(problem.find("persistence.connect-timeout-ms") != std::string::npos, problem);
}

BOOST_AUTO_TEST_CASE(the_refusal_names_the_option_raised_most) {
  settings s;
  s.commit_timeout = 7000ms;
  auto problem = check_timeouts_nest(s);
  BOOST_TEST(problem.find("persistence.commit-timeout-ms") != std::string::npos, problem);
  s = settings{};
  s.workspace_lookup_timeout = 5000ms;
  problem = check_timeouts_nest(s);
  BOOST_TEST(problem.find("router.timeout-ms") != std::string::npos, problem);
}

BOOST_AUTO_TEST_CASE(a_request_timeout_lowered_too_far_is_named) {
  settings s;
  s.request_timeout = 4000ms;
  auto problem = check_timeouts_nest(s);
  BOOST_TEST(problem.find("http.request-timeout-ms") != std::string::npos, problem);
}

BOOST_AUTO_TEST_CASE(the_rule_printed_lists_every_term) {
  auto rule = timeouts_nest_rule();
  for (const char* term : {"router.timeout-ms", "persistence.flush-interval-ms",
                           "persistence.connect-timeout-ms", "persistence.commit-timeout-ms",
                           "1500", "http.request-timeout-ms"})
    BOOST_TEST(rule.find(term) != std::string::npos, rule << " lacks " << term);
}

BOOST_AUTO_TEST_SUITE_END()
