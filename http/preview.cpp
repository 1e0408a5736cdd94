// Inbox previews: one line, at most N code points, valid UTF-8 only.
#include "http/preview.hpp"

namespace kapso {

namespace {

// Length of the valid UTF-8 sequence starting at `pos`, or 0 when the bytes
// there are not one (overlong forms, surrogates and values past U+10FFFF
// included, so the output is always valid UTF-8).
size_t sequence_length(std::string_view text, size_t pos) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  auto lead = byte(pos);
  if (lead < 0x80)
    return 1;
  size_t len = 0;
  unsigned char min_second = 0x80;
  unsigned char max_second = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    len = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    len = 3;
    if (lead == 0xe0)
      min_second = 0xa0; // overlong
    else if (lead == 0xed)
      max_second = 0x9f; // UTF-16 surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    len = 4;
    if (lead == 0xf0)
      min_second = 0x90; // overlong
    else if (lead == 0xf4)
      max_second = 0x8f; // past U+10FFFF
  } else {
    return 0;
  }
  if (pos + len > text.size())
    return 0;
  if (byte(pos + 1) < min_second || byte(pos + 1) > max_second)
    return 0;
  for (size_t i = 2; i < len; ++i)
    if ((byte(pos + i) & 0xc0) != 0x80)
      return 0;
  return len;
}

bool is_ascii_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

} // namespace

// Streams over the text so a huge message costs no more than its first
// `max_chars` code points. Previews are one line: every ASCII whitespace
// (newlines and tabs included) becomes a space, none at either end.
std::string cut_utf8(std::string_view text, size_t max_chars) {
  std::string out;
  size_t emitted = 0;
  size_t pos = 0;
  while (pos < text.size() && emitted < max_chars) {
    auto len = sequence_length(text, pos);
    if (len == 0) {
      ++pos;
      continue;
    }
    auto c = text[pos];
    if (len == 1 && is_ascii_space(c)) {
      if (out.empty()) {
        pos += 1;
        continue;
      }
      // A CRLF is one line break: one space, not two.
      if (c == '\r' && pos + 1 < text.size() && text[pos + 1] == '\n')
        ++pos;
      out += ' ';
    } else {
      out.append(text.substr(pos, len));
    }
    pos += len;
    ++emitted;
  }
  while (!out.empty() && is_ascii_space(out.back()))
    out.pop_back();
  return out;
}

} // namespace kapso
