// The workspace snapshot file: round trip, mode 0600, anything unreadable
// read as "no snapshot" (files in a temp dir).
#include "persistence/workspace_snapshot.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <boost/test/unit_test.hpp>

using namespace kapso;
namespace fs = std::filesystem;

namespace {

struct snapshot_dir {
  fs::path path;

  snapshot_dir() {
    auto pattern = (fs::temp_directory_path() / "kapso-snapshot-test-XXXXXX").string();
    BOOST_REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path = pattern;
  }
  ~snapshot_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file() const { return (path / "workspaces.snapshot").string(); }
};

std::vector<known_workspace> sample() {
  return {
    {"8f0c7c2e-0000-4000-8000-000000000001", "123456789012345", "s3cr3t,other"},
    {"8f0c7c2e-0000-4000-8000-000000000002", "223456789012345", ""},
    {"", "", std::string{"\0\xff binary", 9}},
    {"8f0c7c2e-0000-4000-8000-000000000004", "423456789012345", std::string(100000, 'k')},
  };
}

void check_equal(const std::vector<known_workspace>& x, const std::vector<known_workspace>& y) {
  BOOST_REQUIRE_EQUAL(x.size(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    BOOST_TEST(x[i].id == y[i].id);
    BOOST_TEST(x[i].phone_number_id == y[i].phone_number_id);
    BOOST_TEST(x[i].secret_list == y[i].secret_list);
  }
}

std::string contents(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{}};
}

void overwrite(const std::string& path, const std::string& bytes) {
  std::ofstream{path, std::ios::binary | std::ios::trunc} << bytes;
}

} // namespace

BOOST_AUTO_TEST_SUITE(workspace_snapshot)

BOOST_AUTO_TEST_CASE(round_trip_and_replace) {
  snapshot_dir dir;
  BOOST_REQUIRE(save_workspace_snapshot(dir.file(), sample()));
  check_equal(load_workspace_snapshot(dir.file()), sample());
  auto smaller = sample();
  smaller.resize(1);
  BOOST_REQUIRE(save_workspace_snapshot(dir.file(), smaller));
  check_equal(load_workspace_snapshot(dir.file()), smaller);
  BOOST_REQUIRE(save_workspace_snapshot(dir.file(), {}));
  BOOST_TEST(load_workspace_snapshot(dir.file()).empty());
  // No temp file left behind.
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path))
    ++files;
  BOOST_TEST(files == 1u);
}

BOOST_AUTO_TEST_CASE(file_is_mode_0600_whatever_the_umask) {
  snapshot_dir dir;
  auto old_mask = ::umask(0);
  bool saved = save_workspace_snapshot(dir.file(), sample());
  ::umask(old_mask);
  BOOST_REQUIRE(saved);
  struct stat st {};
  BOOST_REQUIRE(::stat(dir.file().c_str(), &st) == 0);
  BOOST_TEST((st.st_mode & 0777) == 0600u);
}

BOOST_AUTO_TEST_CASE(missing_corrupt_or_foreign_files_read_as_empty) {
  snapshot_dir dir;
  BOOST_TEST(load_workspace_snapshot(dir.file()).empty());
  BOOST_REQUIRE(save_workspace_snapshot(dir.file(), sample()));
  auto good = contents(dir.file());
  // Any single flipped byte, and any truncation, is caught.
  for (size_t at : {size_t{0}, size_t{8}, size_t{12}, size_t{20}, good.size() / 2,
                    good.size() - 1}) {
    auto bad = good;
    bad[at] = static_cast<char>(bad[at] ^ 0x01);
    overwrite(dir.file(), bad);
    BOOST_TEST(load_workspace_snapshot(dir.file()).empty(), "flipped byte " << at);
  }
  for (size_t size : {size_t{0}, size_t{3}, size_t{19}, good.size() - 1}) {
    overwrite(dir.file(), good.substr(0, size));
    BOOST_TEST(load_workspace_snapshot(dir.file()).empty(), "truncated to " << size);
  }
  overwrite(dir.file(), R"([{"id":"x"}])");
  BOOST_TEST(load_workspace_snapshot(dir.file()).empty());
  // A directory where the file should be: refused, not thrown.
  fs::remove(dir.file());
  fs::create_directory(dir.file());
  BOOST_TEST(load_workspace_snapshot(dir.file()).empty());
  BOOST_TEST(!save_workspace_snapshot(dir.file(), sample()));
}

BOOST_AUTO_TEST_SUITE_END()
