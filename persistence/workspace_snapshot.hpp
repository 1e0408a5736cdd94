// The last known workspace directory, kept on disk next to the spool so a
// server started while PostgreSQL is down can still verify and spool.
#pragma once

#include <string>
#include <vector>

namespace kapso {

struct known_workspace {
  std::string id;
  std::string phone_number_id;
  std::string secret_list;
};

// Atomic replace: temp file (mode 0600) + fsync + rename + directory fsync.
// False on failure (logged).
bool save_workspace_snapshot(const std::string& path,
                             const std::vector<known_workspace>& workspaces);

// Empty when missing; a corrupt or foreign file is logged and ignored (empty
// result), never thrown.
std::vector<known_workspace> load_workspace_snapshot(const std::string& path);

} // namespace kapso
