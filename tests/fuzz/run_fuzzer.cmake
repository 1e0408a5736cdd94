# Runs one fuzzer for a bounded time (ctest's fuzz_<target>): new inputs go
# to a working corpus in the build dir, the seed directories are only read;
# a crash, sanitizer report, leak, timeout or OOM fails the test.
#   cmake -DFUZZER=... -DWORK_DIR=... -DSEEDS="dir|dir" -DSECONDS=n [-DDICT=file]
#         -P run_fuzzer.cmake
string(REPLACE "|" ";" seeds "${SEEDS}")
set(readable)
foreach(dir IN LISTS seeds)
  if(IS_DIRECTORY ${dir})
    list(APPEND readable ${dir})
  endif()
endforeach()
set(options)
if(DICT)
  list(APPEND options -dict=${DICT})
endif()
file(MAKE_DIRECTORY ${WORK_DIR}/corpus ${WORK_DIR}/artifacts)
execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10
          -print_final_stats=1 -artifact_prefix=${WORK_DIR}/artifacts/ ${options}
          ${WORK_DIR}/corpus ${readable}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${result}); the input is in ${WORK_DIR}/artifacts")
endif()
