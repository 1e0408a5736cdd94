// Entry point of the integration tests: the real server over loopback HTTP with PostgreSQL.
#define BOOST_TEST_MODULE kapso_integration_tests
#include <boost/test/unit_test.hpp>
