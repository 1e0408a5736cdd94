// Durable file writes shared by the spool and the workspace snapshot.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kapso {

// Writes all of `bytes` at `pos` (retrying short writes and EINTR). False
// with errno set when a write fails.
bool write_all_at(int fd, std::string_view bytes, uint64_t pos);

// fsyncs the directory holding `path`: a created or renamed file's name is
// durable only then.
bool sync_parent_directory(const std::string& path);

} // namespace kapso
