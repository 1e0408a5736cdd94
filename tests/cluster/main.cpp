// Entry point of the cluster tests: the fleet of scripts/cluster.sh, and the deployment files.
#define BOOST_TEST_MODULE kapso_cluster_tests
#include <boost/test/unit_test.hpp>
