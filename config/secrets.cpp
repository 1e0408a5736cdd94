// Splitting configured secret lists.
#include "config/secrets.hpp"

#include <cctype>

namespace kapso {

namespace {

bool is_separator(char c) {
  return c == ',' || std::isspace(static_cast<unsigned char>(c)) != 0;
}

} // namespace

std::vector<std::string> split_secrets(std::string_view list) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < list.size()) {
    while (pos < list.size() && is_separator(list[pos]))
      ++pos;
    auto end = pos;
    while (end < list.size() && !is_separator(list[end]))
      ++end;
    if (end > pos)
      out.emplace_back(list.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

} // namespace kapso
