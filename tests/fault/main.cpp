// Entry point of the fault tests: the real server, a private PostgreSQL the suite breaks, and the checks.
#define BOOST_TEST_MODULE kapso_fault_tests
#include <boost/test/results_collector.hpp>
#include <boost/test/unit_test.hpp>

#include <iomanip>
#include <iostream>

#include "tests/fault/pg_cluster.hpp"

namespace {

// Prints each case's duration as it ends, so the suite's time budget
// (about 8 minutes on 2 cores) stays visible.
struct case_clock : boost::unit_test::test_observer {
  void test_unit_finish(const boost::unit_test::test_unit& unit, unsigned long elapsed) override {
    if (unit.p_type != boost::unit_test::TUT_CASE)
      return;
    auto& results = boost::unit_test::results_collector.results(unit.p_id);
    std::cerr << "[fault] " << std::left << std::setw(52) << unit.p_name.get() << " "
              << std::right << std::fixed << std::setprecision(1) << std::setw(6)
              << static_cast<double>(elapsed) / 1e6 << " s  "
              << (results.passed() ? "passed" : "FAILED") << std::endl;
  }
  // After the results collector, which counts the case first.
  int priority() override { return 10; }
};

// The private cluster lives for the whole run and is removed even when
// cases fail.
struct fault_run {
  fault_run() { boost::unit_test::framework::register_observer(clock); }
  ~fault_run() {
    boost::unit_test::framework::deregister_observer(clock);
    kapso_fault::pg_cluster::release_shared();
  }
  case_clock clock;
};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(fault_run);
