# Included by the top-level CMakeLists.txt: builds the libFuzzer targets of
# tests/fuzz with clang in a sub-build (the main build stays g++) and runs
# each for a bounded time as a test named fuzz_<target>.

set(KAPSO_FUZZ_TARGETS payload message_content signature spool_batch spool_file)
set(KAPSO_FUZZ_SECONDS 20 CACHE STRING "how long each fuzzer runs as a test")

find_program(KAPSO_FUZZ_CLANGXX NAMES clang++-14 clang++)
if(NOT KAPSO_FUZZ_CLANGXX)
  message(FATAL_ERROR
    "clang++ not found. The fuzzers need clang and libFuzzer (Debian bookworm: clang "
    "libclang-rt-14-dev; scripts/lib.sh installs them). -DKAPSO_FUZZ=OFF builds without "
    "them.")
endif()

# libFuzzer and the sanitizer runtimes come in their own package: prove now
# that a fuzzer links, rather than failing halfway through the build.
if(NOT KAPSO_FUZZ_TOOLCHAIN_OK)
  set(probe_dir ${CMAKE_BINARY_DIR}/fuzz-probe)
  file(WRITE ${probe_dir}/probe.cpp
    "#include <cstddef>\n#include <cstdint>\n"
    "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n")
  execute_process(
    COMMAND ${KAPSO_FUZZ_CLANGXX} -fsanitize=fuzzer,address,undefined probe.cpp -o probe
    WORKING_DIRECTORY ${probe_dir}
    RESULT_VARIABLE probe_result
    OUTPUT_VARIABLE probe_output
    ERROR_VARIABLE probe_output)
  if(NOT probe_result EQUAL 0)
    message(FATAL_ERROR
      "${KAPSO_FUZZ_CLANGXX} cannot link a libFuzzer target with ASan and UBSan "
      "(Debian bookworm: install libclang-rt-14-dev; scripts/lib.sh does). -DKAPSO_FUZZ=OFF "
      "builds without the fuzzers.\n${probe_output}")
  endif()
  set(KAPSO_FUZZ_TOOLCHAIN_OK ON CACHE INTERNAL "clang links libFuzzer targets")
endif()

include(ExternalProject)
set(fuzz_build ${CMAKE_BINARY_DIR}/fuzz)
string(REPLACE ";" "|" fuzz_targets "${KAPSO_FUZZ_TARGETS}")
ExternalProject_Add(kapso_fuzzers
  SOURCE_DIR ${CMAKE_SOURCE_DIR}
  BINARY_DIR ${fuzz_build}
  LIST_SEPARATOR |
  CMAKE_ARGS
    -DKAPSO_FUZZ_ONLY=ON
    -DKAPSO_FUZZ_TARGETS=${fuzz_targets}
    -DCMAKE_CXX_COMPILER=${KAPSO_FUZZ_CLANGXX}
    -DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}
  # Its own build system knows what is out of date.
  BUILD_ALWAYS ON
  INSTALL_COMMAND "")

# The JSON targets find their way into the webhook shapes much faster with
# the keys the parser looks for.
set(fuzz_dict_payload ${CMAKE_SOURCE_DIR}/tests/fuzz/json.dict)
set(fuzz_dict_message_content ${CMAKE_SOURCE_DIR}/tests/fuzz/json.dict)

foreach(target IN LISTS KAPSO_FUZZ_TARGETS)
  add_test(NAME fuzz_${target}
    COMMAND ${CMAKE_COMMAND}
      -DFUZZER=${fuzz_build}/fuzz_${target}
      -DDICT=${fuzz_dict_${target}}
      -DWORK_DIR=${CMAKE_BINARY_DIR}/fuzz-runs/${target}
      -DSEEDS=${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${target}|${fuzz_build}/seeds/${target}
      -DSECONDS=${KAPSO_FUZZ_SECONDS}
      -P ${CMAKE_SOURCE_DIR}/tests/fuzz/run_fuzzer.cmake)
  set_tests_properties(fuzz_${target} PROPERTIES TIMEOUT 300)
endforeach()
