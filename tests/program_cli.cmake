# Checks one installed program's command line and man page; run by CTest with
# -D PROGRAM=<binary> -D NAME=<name> -D VERSION=<project version> -D MANPAGE=<page>.
# --help: exit 0, a usage line on stdout and nothing on stderr. --version: exit 0,
# exactly "<name> (xenbus) <version>". An unknown option: exit 2, usage on stderr.
# The man page: names the program and the version, and groff formats it without a warning
# (the check lintian makes).
execute_process(COMMAND ${PROGRAM} --help RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "^usage: " OR NOT err STREQUAL "")
  message(FATAL_ERROR "${NAME} --help: exit ${rc}, stdout '${out}', stderr '${err}'")
endif()

execute_process(COMMAND ${PROGRAM} --version RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out STREQUAL "${NAME} (xenbus) ${VERSION}\n" OR NOT err STREQUAL "")
  message(FATAL_ERROR "${NAME} --version: exit ${rc}, stdout '${out}', stderr '${err}'; "
    "want '${NAME} (xenbus) ${VERSION}'")
endif()

execute_process(COMMAND ${PROGRAM} --no-such-option RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 2 OR NOT err MATCHES "usage: ")
  message(FATAL_ERROR "${NAME} --no-such-option: exit ${rc} (want 2), stderr '${err}'")
endif()

if(NOT EXISTS "${MANPAGE}")
  message(FATAL_ERROR "${NAME}: no man page ${MANPAGE}")
endif()
file(READ ${MANPAGE} page)
string(TOUPPER "${NAME}" upper)
if(NOT page MATCHES "\n\\.TH ${upper} [1-8] [^\n]*\"xenbus ${VERSION}\"")
  message(FATAL_ERROR "${MANPAGE}: no '.TH ${upper} <section> ... \"xenbus ${VERSION}\"' line")
endif()
find_program(GROFF groff)
if(GROFF)
  execute_process(COMMAND ${GROFF} -man -ww -z -Tutf8 ${MANPAGE} RESULT_VARIABLE rc ERROR_VARIABLE err)
  if(NOT rc EQUAL 0 OR NOT err STREQUAL "")
    message(FATAL_ERROR "groff warns on ${MANPAGE} (exit ${rc}): ${err}")
  endif()
else()
  message(STATUS "${NAME}: groff not found (groff-base): man page formatting not checked")
endif()
