// CRC32C: the SSE4.2 instruction when the CPU has it, else a byte table.
#include "persistence/crc32c.hpp"

#include <array>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace kapso {

namespace {

// The reflected Castagnoli polynomial.
constexpr uint32_t polynomial = 0x82f63b78u;

constexpr std::array<uint32_t, 256> make_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc >> 1) ^ ((crc & 1u) ? polynomial : 0u);
    table[i] = crc;
  }
  return table;
}

constexpr auto table = make_table();

uint32_t update_portable(uint32_t crc, const unsigned char* p, size_t size) noexcept {
  for (size_t i = 0; i < size; ++i)
    crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
uint32_t update_sse42(uint32_t crc, const unsigned char* p, size_t size) noexcept {
  uint64_t wide = crc;
  for (; size >= 8; size -= 8, p += 8) {
    uint64_t word;
    std::memcpy(&word, p, sizeof(word));
    wide = _mm_crc32_u64(wide, word);
  }
  auto narrow = static_cast<uint32_t>(wide);
  for (; size > 0; --size, ++p)
    narrow = _mm_crc32_u8(narrow, *p);
  return narrow;
}

bool has_sse42() noexcept {
  static const bool present = __builtin_cpu_supports("sse4.2");
  return present;
}
#endif

} // namespace

uint32_t crc32c(uint32_t crc, const void* data, size_t size) noexcept {
  auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
#if defined(__x86_64__)
  if (has_sse42())
    return ~update_sse42(crc, p, size);
#endif
  return ~update_portable(crc, p, size);
}

} // namespace kapso
