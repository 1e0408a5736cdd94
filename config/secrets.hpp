// Secret lists as configured ("a,b c"): several secrets are valid at once
// while one is rotated.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace kapso {

// The non-empty secrets of a list separated by commas or white space.
std::vector<std::string> split_secrets(std::string_view list);

} // namespace kapso
