// CPU time of the processes under test (server, PostgreSQL) over the load, from /proc.
#include "benchmarks/process_cpu.hpp"

#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <vector>

namespace kapso::bench {

namespace {

// The fields of /proc/PID/stat after "(comm)": the command name may hold
// spaces and parentheses, so it is cut at the last ')'. fields[0] is the
// state (field 3 of proc(5)), so field k of proc(5) is fields[k - 3].
std::optional<std::vector<long long>> stat_fields(const std::string& path) {
  std::ifstream in{path};
  std::string line;
  if (!std::getline(in, line))
    return std::nullopt;
  auto close = line.rfind(')');
  if (close == std::string::npos || close + 2 > line.size())
    return std::nullopt;
  std::istringstream rest{line.substr(close + 2)};
  std::string state;
  rest >> state;
  std::vector<long long> fields{0};
  long long value = 0;
  while (fields.size() < 15 && rest >> value)
    fields.push_back(value);
  if (fields.size() < 15)
    return std::nullopt;
  return fields;
}

constexpr size_t ppid = 4 - 3;
constexpr size_t utime = 14 - 3;
constexpr size_t stime = 15 - 3;
constexpr size_t cutime = 16 - 3;
constexpr size_t cstime = 17 - 3;

} // namespace

std::optional<double> process_tree_cpu_seconds(int pid) {
  auto own = stat_fields("/proc/" + std::to_string(pid) + "/stat");
  if (!own)
    return std::nullopt;
  auto& f = *own;
  long long ticks = f[utime] + f[stime] + f[cutime] + f[cstime];
  std::error_code ec;
  for (auto& entry : std::filesystem::directory_iterator{"/proc", ec}) {
    auto name = entry.path().filename().string();
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0])))
      continue;
    // A child that exits meanwhile is simply not found; its time moves to
    // the parent's cutime once reaped.
    auto child = stat_fields(entry.path().string() + "/stat");
    if (child && (*child)[ppid] == pid)
      ticks += (*child)[utime] + (*child)[stime];
  }
  return static_cast<double>(ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

cpu_target parse_cpu_target(const std::string& text) {
  auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    throw std::invalid_argument("--cpu-pid: expected NAME=PID, got " + text);
  cpu_target target;
  target.name = text.substr(0, eq);
  for (char c : target.name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_')
      throw std::invalid_argument("--cpu-pid: NAME must be letters, digits or '_': "
                                  + target.name);
  auto digits = text.substr(eq + 1);
  if (digits.empty() || digits.size() > 9
      || digits.find_first_not_of("0123456789") != std::string::npos)
    throw std::invalid_argument("--cpu-pid: not a process id: " + digits);
  target.pid = std::stoi(digits);
  if (target.pid <= 0)
    throw std::invalid_argument("--cpu-pid: not a process id: " + digits);
  return target;
}

} // namespace kapso::bench
