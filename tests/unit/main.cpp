// Tier-1 unit tests: pure functions only, no I/O.
#define BOOST_TEST_MODULE kapso_unit_tests
#include <boost/test/unit_test.hpp>
