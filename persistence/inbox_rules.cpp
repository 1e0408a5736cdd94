// Status ranks: the order in which a message's status may move.
#include "persistence/inbox_rules.hpp"

namespace kapso {

int status_rank(std::string_view status) {
  if (status == "received" || status == "sent")
    return 1;
  if (status == "delivered")
    return 2;
  if (status == "read")
    return 3;
  if (status == "failed")
    return 4;
  return 0;
}

bool status_advances(std::string_view from, std::string_view to) {
  return status_rank(to) > status_rank(from);
}

} // namespace kapso
