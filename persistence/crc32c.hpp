// CRC32C (Castagnoli) and the little-endian integers of the on-disk frames
// it guards (the outage spool, the workspace snapshot).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace kapso {

// CRC32C of `size` bytes, continuing from `crc` (0 to start): crc32c(crc32c(0,
// a), b) equals the CRC of a followed by b. SSE4.2 when the CPU has it.
uint32_t crc32c(uint32_t crc, const void* data, size_t size) noexcept;

inline uint32_t crc32c(std::string_view bytes) noexcept {
  return crc32c(0, bytes.data(), bytes.size());
}

// Fixed-width little-endian integers: the files read the same on any host.
inline void put_le32(std::string& out, uint32_t value) {
  for (int i = 0; i < 4; ++i)
    out += static_cast<char>((value >> (8 * i)) & 0xff);
}

inline void put_le64(std::string& out, uint64_t value) {
  for (int i = 0; i < 8; ++i)
    out += static_cast<char>((value >> (8 * i)) & 0xff);
}

inline uint32_t get_le32(const char* in) noexcept {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i)
    value = (value << 8) | static_cast<unsigned char>(in[i]);
  return value;
}

inline uint64_t get_le64(const char* in) noexcept {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i)
    value = (value << 8) | static_cast<unsigned char>(in[i]);
  return value;
}

} // namespace kapso
