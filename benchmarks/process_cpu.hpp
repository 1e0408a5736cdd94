// CPU time of the processes under test (server, PostgreSQL) over the load, from /proc.
#pragma once

#include <optional>
#include <string>

namespace kapso::bench {

// utime+stime of `pid`, plus what its children used: the live ones' utime+
// stime and the exited ones' (cutime+cstime), so a PostgreSQL postmaster
// counts every backend, the ones that ended during the run included. In
// seconds; nullopt when the process is gone or /proc is not there.
std::optional<double> process_tree_cpu_seconds(int pid);

// "NAME=PID" as --cpu-pid takes it; throws std::invalid_argument.
struct cpu_target {
  std::string name;
  int pid = 0;
};
cpu_target parse_cpu_target(const std::string& text);

// What one of them used over the load (first send to the end of the drain).
struct cpu_usage {
  std::string name;
  int pid = 0;
  double seconds = 0;
};

} // namespace kapso::bench
