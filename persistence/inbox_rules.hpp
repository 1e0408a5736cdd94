// The inbox's status order, mirrored by the SQL function kapso_status_rank.
#pragma once

#include <cstdint>
#include <string_view>

namespace kapso {

// sent < delivered < read; failed is terminal; received ranks with sent.
// Mirrors the SQL function kapso_status_rank (migration 0002).
int status_rank(std::string_view status);

// True when `to` may replace `from` (status never moves backwards).
bool status_advances(std::string_view from, std::string_view to);

} // namespace kapso
