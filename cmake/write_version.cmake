# Writes OUT (a header defining CRSM_GIT_DESCRIBE) from `git describe` of SOURCE_DIR, and
# only when it changes, so a build after a commit relinks what reports the version and
# nothing else. Outside a git checkout the version is the project's.
execute_process(COMMAND git describe --always --dirty --tags
                WORKING_DIRECTORY ${SOURCE_DIR} OUTPUT_VARIABLE describe ERROR_QUIET OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE failed)
if(failed OR describe STREQUAL "")
  set(describe "${PROJECT_VERSION} (not a git checkout)")
endif()
set(text "#pragma once\n#define CRSM_GIT_DESCRIBE \"${describe}\"\n")
if(EXISTS ${OUT})
  file(READ ${OUT} old)
endif()
if(NOT old STREQUAL text)
  file(WRITE ${OUT} "${text}")
endif()
