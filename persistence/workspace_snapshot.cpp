// The workspace snapshot file: magic, version, entries, CRC32C of it all.
//
// Layout (integers little-endian): "KAPSOWSD", u32 version (1), u32 entry
// count, per entry its fields as u32 length + bytes, then u32 CRC32C of
// every byte before it. Secrets are in it: mode 0600, never logged.
#include "persistence/workspace_snapshot.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <iterator>
#include <string_view>

#include <spdlog/spdlog.h>

#include "persistence/crc32c.hpp"
#include "persistence/file_io.hpp"

namespace kapso {

namespace {

constexpr char magic[8] = {'K', 'A', 'P', 'S', 'O', 'W', 'S', 'D'};
constexpr uint32_t version = 1;
// Far beyond any real directory; a larger file is not ours.
constexpr uint64_t max_file_size = 64u << 20;

// The fields of an entry, in file order: writer and reader walk this list.
constexpr std::string known_workspace::*fields[] = {
  &known_workspace::id,
  &known_workspace::phone_number_id,
  &known_workspace::secret_list,
};

std::string encode(const std::vector<known_workspace>& workspaces) {
  std::string out{magic, sizeof(magic)};
  put_le32(out, version);
  put_le32(out, static_cast<uint32_t>(workspaces.size()));
  for (const auto& ws : workspaces)
    for (auto field : fields) {
      put_le32(out, static_cast<uint32_t>((ws.*field).size()));
      out += ws.*field;
    }
  put_le32(out, crc32c(out));
  return out;
}

// Why `bytes` is not a snapshot, or "" when `out` holds its entries.
const char* decode(std::string_view bytes, std::vector<known_workspace>& out) {
  constexpr size_t header = sizeof(magic) + 8;
  if (bytes.size() < header + 4 || std::memcmp(bytes.data(), magic, sizeof(magic)) != 0)
    return "not a workspace snapshot";
  if (get_le32(bytes.data() + 8) != version)
    return "unknown format version";
  auto body = bytes.substr(0, bytes.size() - 4);
  if (crc32c(body) != get_le32(bytes.data() + body.size()))
    return "CRC mismatch";
  auto count = get_le32(bytes.data() + 12);
  auto rest = body.substr(header);
  // Each entry takes at least its three lengths.
  if (count > rest.size() / (4 * std::size(fields)))
    return "entry count larger than the file";
  std::vector<known_workspace> entries(count);
  for (auto& ws : entries)
    for (auto field : fields) {
      if (rest.size() < 4)
        return "truncated entry";
      auto size = get_le32(rest.data());
      rest.remove_prefix(4);
      if (rest.size() < size)
        return "truncated entry";
      (ws.*field).assign(rest.substr(0, size));
      rest.remove_prefix(size);
    }
  if (!rest.empty())
    return "bytes after the last entry";
  out = std::move(entries);
  return "";
}

} // namespace

bool save_workspace_snapshot(const std::string& path,
                             const std::vector<known_workspace>& workspaces) {
  auto temp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    spdlog::warn("workspace snapshot {} not saved: cannot create {}: {}", path, temp,
                 std::strerror(errno));
    return false;
  }
  // 0600 whatever the umask: the file holds secrets.
  bool ok = ::fchmod(fd, 0600) == 0 && write_all_at(fd, encode(workspaces), 0)
            && ::fsync(fd) == 0;
  int err = errno;
  ok = ::close(fd) == 0 && ok;
  if (ok && ::rename(temp.c_str(), path.c_str()) != 0) {
    ok = false;
    err = errno;
  }
  if (!ok) {
    spdlog::warn("workspace snapshot {} not saved: {}", path, std::strerror(err));
    ::unlink(temp.c_str());
    return false;
  }
  if (!sync_parent_directory(path)) {
    spdlog::warn("workspace snapshot {}: directory not synced: {}", path, std::strerror(errno));
    return false;
  }
  return true;
}

std::vector<known_workspace> load_workspace_snapshot(const std::string& path) {
  std::vector<known_workspace> out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT)
      spdlog::warn("workspace snapshot {} ignored: {}", path, std::strerror(errno));
    return out;
  }
  struct stat st {};
  std::string bytes;
  const char* why = "";
  if (::fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) > max_file_size) {
    why = "unreadable or too large";
  } else {
    bytes.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < bytes.size()) {
      auto n = ::read(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      done += static_cast<size_t>(n);
    }
    bytes.resize(done);
    why = decode(bytes, out);
  }
  ::close(fd);
  if (*why != '\0') {
    spdlog::warn("workspace snapshot {} ignored: {}", path, why);
    out.clear();
  }
  return out;
}

} // namespace kapso
