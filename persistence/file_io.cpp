// Durable file writes: full pwrites and directory syncs.
#include "persistence/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace kapso {

bool write_all_at(int fd, std::string_view bytes, uint64_t pos) {
  size_t written = 0;
  while (written < bytes.size()) {
    auto n = ::pwrite(fd, bytes.data() + written, bytes.size() - written,
                      static_cast<off_t>(pos + written));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return false;
    if (n == 0) {
      errno = EIO;
      return false;
    }
    written += static_cast<size_t>(n);
  }
  return true;
}

bool sync_parent_directory(const std::string& path) {
  auto slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return false;
  bool ok = ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  errno = err;
  return ok;
}

} // namespace kapso
