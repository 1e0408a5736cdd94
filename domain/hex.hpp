// Hexadecimal digits, read and written: signatures, UUIDs.
#pragma once

#include <string>

namespace kapso {

// The value of one hex digit (either case), or -1 when `c` is not one.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

// Appends `byte` as two lower-case hex digits.
inline void append_hex(std::string& out, unsigned char byte) {
  static constexpr char digits[] = "0123456789abcdef";
  out += digits[byte >> 4];
  out += digits[byte & 0x0f];
}

} // namespace kapso
