// The supervisor: the first pipeline actor that stops is reported, once.
#include "actors/supervisor.hpp"

#include <boost/test/unit_test.hpp>

#include "tests/actors/fixture.hpp"

using namespace kapso;
using namespace kapso::testing;

namespace {

caf::behavior idle_actor(caf::event_based_actor*) {
  return {[](commit_atom) {}};
}

} // namespace

BOOST_FIXTURE_TEST_SUITE(supervisor_tests, actor_fixture)

BOOST_AUTO_TEST_CASE(the_first_actor_that_stops_is_reported_once_by_name) {
  auto writer = spawn(idle_actor);
  auto router = spawn(idle_actor);
  std::vector<std::string> reports;
  spawn(supervisor, std::vector<std::pair<std::string, caf::actor>>{{"router", router},
                                                                     {"writer 0", writer}},
        [&](const std::string& why) { reports.push_back(why); });
  run();
  BOOST_TEST(reports.empty());
  caf::anon_send_exit(writer, caf::exit_reason::unhandled_exception);
  run();
  BOOST_REQUIRE_EQUAL(reports.size(), 1u);
  BOOST_TEST(reports[0].rfind("writer 0 stopped", 0) == 0, reports[0]);
  caf::anon_send_exit(router, caf::exit_reason::kill);
  run();
  BOOST_TEST(reports.size() == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
