# SPDX-License-Identifier: MIT
# Every file of the source tree names its licence in its first lines (SPDX), except the fuzz
# corpus inputs, which are raw bytes covered by .reuse/dep5. Run as
#   cmake -DSRC=<source dir> -P check_spdx.cmake
if(NOT SRC)
  message(FATAL_ERROR "usage: cmake -DSRC=<source dir> -P check_spdx.cmake")
endif()
if(NOT EXISTS "${SRC}/LICENSE")
  message(FATAL_ERROR "LICENSE is missing from ${SRC}")
endif()
file(GLOB_RECURSE files RELATIVE "${SRC}" LIST_DIRECTORIES false "${SRC}/*")
set(missing "")
set(count 0)
foreach(f IN LISTS files)
  if(f MATCHES "^(build|_build)[^/]*/|^\\.git(/|$)|^\\.cache/|^tests/fuzz/corpus/|^LICENSE$|^\\.reuse/|^abi/|^debian/(changelog|compat|source/format)$"
     OR f MATCHES "/build[^/]*/|\\.(o|a|so|pyc)$")
    continue()
  endif()
  file(STRINGS "${SRC}/${f}" head LIMIT_COUNT 3)
  math(EXPR count "${count} + 1")
  if(NOT head MATCHES "SPDX-License-Identifier: MIT")
    list(APPEND missing "${f}")
  endif()
endforeach()
if(missing)
  list(JOIN missing "\n  " text)
  message(FATAL_ERROR "files without an SPDX-License-Identifier line:\n  ${text}")
endif()
message(STATUS "${count} files carry the MIT SPDX line")
