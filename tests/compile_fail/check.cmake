# Runs one compile-fail case: cmake -DCXX=<compiler> -DINCLUDE=<dir> -DSOURCE=<file>
#   -DEXPECT=<sentence> -P check.cmake   (or -DEXPECT= to demand that SOURCE compiles).
# A case passes only if compilation fails AND the compiler names the expected sentence AND no
# other xenbus check sentence fired, so an unrelated error (a typo) never counts as a pass.
execute_process(
  COMMAND ${CXX} -std=c++20 -fsyntax-only -I${INCLUDE} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
if(EXPECT STREQUAL "")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "control case must compile, but did not:\n${log}")
  endif()
  message(STATUS "compiled as it must")
  return()
endif()
if(rc EQUAL 0)
  message(FATAL_ERROR "compiled, but must fail with: ${EXPECT}")
endif()
string(FIND "${log}" "${EXPECT}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "failed, but not with \"${EXPECT}\":\n${log}")
endif()
# Every xenbus check sentence that fired must be the expected one.
string(REGEX MATCHALL "xenbus (transition table|device driver): [^\"\n]*" fired "${log}")
foreach(f IN LISTS fired)
  string(FIND "${f}" "${EXPECT}" same)
  if(same EQUAL -1)
    string(FIND "${EXPECT}" "${f}" same)
  endif()
  if(same EQUAL -1)
    message(FATAL_ERROR "another check fired too: ${f}\n${log}")
  endif()
endforeach()
message(STATUS "failed as it must: ${EXPECT}")
