// Connections the fault cases drive by hand: raw sockets for hostile
// clients, and a signed delivery retried until it is answered 200.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "tests/fault/load.hpp"

namespace kapso_fault {

// A non-blocking TCP connection to the server, connected within 2 s (the
// kernel completes it from the listen backlog even when the server does not
// accept); -1 when that fails.
int open_raw(uint16_t port);

// True once the peer closed or reset the connection (answer bytes, such as
// a 408, are read and skipped).
bool closed_by_peer(int fd);

// The status code of the answer waiting on `fd` ("HTTP/1.1 413 ..."): 0 when
// none arrived within `within`, -1 when the connection was closed or reset
// without one.
int answer_status(int fd, std::chrono::milliseconds within);

// Descriptors a process has open (entries of /proc/<pid>/fd).
size_t open_descriptors(int pid);

// A delivery to workspace 0 re-sent until answered 200; how long it took,
// or nullopt when `within` passed first.
std::optional<std::chrono::milliseconds> signed_delivery_works(uint16_t port,
                                                               const load_options& options,
                                                               const std::string& id,
                                                               std::chrono::milliseconds within);

} // namespace kapso_fault
