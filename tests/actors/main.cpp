// Tier-2 tests: actors on CAF's deterministic scheduler, peers stubbed.
#define BOOST_TEST_MODULE kapso_actor_tests
#include <boost/test/unit_test.hpp>
