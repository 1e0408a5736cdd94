// Phone numbers to E.164 with libphonenumber.
#pragma once

#include <string>
#include <string_view>

namespace kapso {

// E.164 form ("+15551234567") of `raw`, or "" when `raw` is not a phone
// number. Bare digits without "+" longer than 10 are read as international
// (WhatsApp's wa_id form); shorter or formatted ones in `default_region`.
std::string normalise_phone(std::string_view raw, const std::string& default_region);

} // namespace kapso
