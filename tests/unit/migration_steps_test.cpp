// Migration files divided into steps by `-- kapso:step KIND` lines.
#include "persistence/migrations.hpp"

#include <stdexcept>

#include <boost/test/unit_test.hpp>

using namespace kapso;

BOOST_AUTO_TEST_SUITE(migration_steps)

BOOST_AUTO_TEST_CASE(a_file_without_markers_is_one_transaction) {
  auto steps = steps_of({"0001_x.sql", "CREATE TABLE a (x int);\nCREATE TABLE b (y int);\n"});
  BOOST_TEST_REQUIRE(steps.size() == 1u);
  BOOST_TEST((steps[0].kind == step_kind::transaction));
  BOOST_TEST(steps[0].sql == "CREATE TABLE a (x int);\nCREATE TABLE b (y int);\n");
}

BOOST_AUTO_TEST_CASE(markers_divide_a_file_in_order) {
  auto steps = steps_of({"0002_x.sql", "-- header\nALTER TABLE a ADD b int;\n"
                                       "-- kapso:step route-merge\n\n"
                                       "-- kapso:step concurrently\n"
                                       "CREATE INDEX CONCURRENTLY i ON a (b);\n"
                                       "-- kapso:step route-recount \n"
                                       "-- kapso:step transaction\n"
                                       "-- only a comment\n\n"
                                       "-- kapso:step transaction\nSELECT 1;"});
  BOOST_TEST_REQUIRE(steps.size() == 5u);
  BOOST_TEST((steps[0].kind == step_kind::transaction));
  BOOST_TEST(steps[0].sql.find("ALTER TABLE a ADD b int;") != std::string::npos);
  BOOST_TEST((steps[1].kind == step_kind::route_merge));
  BOOST_TEST((steps[2].kind == step_kind::concurrently));
  BOOST_TEST((steps[3].kind == step_kind::route_recount));
  // Steps of comments only are left out.
  BOOST_TEST((steps[4].kind == step_kind::transaction));
  BOOST_TEST(steps[4].sql == "SELECT 1;\n");
}

BOOST_AUTO_TEST_CASE(an_unknown_kind_names_the_file) {
  try {
    steps_of({"0009_bad.sql", "-- kapso:step sometimes\nSELECT 1;\n"});
    BOOST_FAIL("accepted an unknown step kind");
  } catch (const std::invalid_argument& e) {
    BOOST_TEST(std::string{e.what()}.find("0009_bad.sql") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(concurrent_statements_are_split_at_line_ends) {
  auto statements = statements_of("-- why\nCREATE UNIQUE INDEX CONCURRENTLY a\n  ON t (x);\n\n"
                                  "CREATE INDEX CONCURRENTLY b ON t (y);  \n");
  BOOST_TEST_REQUIRE(statements.size() == 2u);
  BOOST_TEST(statements[0] == "CREATE UNIQUE INDEX CONCURRENTLY a\n  ON t (x);\n");
  BOOST_TEST(statements[1] == "CREATE INDEX CONCURRENTLY b ON t (y);\n");
}

BOOST_AUTO_TEST_CASE(the_embedded_0002_runs_the_repair_before_its_unique_keys) {
  for (const auto& m : embedded_migrations()) {
    if (m.name.compare(0, 5, "0002_") != 0)
      continue;
    std::vector<step_kind> kinds;
    for (const auto& step : steps_of(m))
      kinds.push_back(step.kind);
    std::vector<step_kind> expected{step_kind::transaction,  step_kind::transaction,
                                    step_kind::transaction,  step_kind::concurrently,
                                    step_kind::route_merge,  step_kind::concurrently,
                                    step_kind::route_recount, step_kind::transaction};
    BOOST_TEST((kinds == expected));
    return;
  }
  BOOST_FAIL("no migration 0002");
}

BOOST_AUTO_TEST_SUITE_END()
