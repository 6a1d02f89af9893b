# SPDX-License-Identifier: MIT
# The header convention tools/mangen.c documents: a new section and new functions documented
# in the usual style get their page, links, sections and example with no other work. Runs
# mangen on a small header made here. Run as
#   cmake -DMANGEN=<rill_mangen> -DMANDOC=<mandoc> -DWORK=<dir> -P check_mangen.cmake
foreach(v MANGEN MANDOC WORK)
  if(NOT ${v})
    message(FATAL_ERROR "usage: cmake -DMANGEN=... -DMANDOC=... -DWORK=... -P check_mangen.cmake")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}")
file(WRITE "${WORK}/widget.h" [=[
/* SPDX-License-Identifier: MIT */
/*
 * widgets for tests.
 */
/* ---------------------------------------------------------------------------------------------
 * Widgets and gadgets
 * Page: rill_widget
 *
 * A widget turns bytes into other bytes. Example:
 *     rill_widget *w;
 *     if (rill_widget_new(&w) != RILL_OK)
 *         return 1;
 */

/** Widget flag: be quick. */
#define RILL_WIDGET_QUICK 0x1u
#define RILL_WIDGET_SLOW  0x2u

/**
 * Make a widget.
 * Ownership: free *out with rill_widget_free().
 * Errors: RILL_E_NOMEM ("widget: out of memory").
 * Thread-safety: safe.
 */
RILL_API RILL_NODISCARD rill_status rill_widget_new(rill_widget **out);

/** Free a widget; NULL is accepted. */
RILL_API void rill_widget_free(rill_widget *w);
]=])
execute_process(COMMAND "${MANGEN}" "${WORK}/man" "December 4, 2026" 0.0.0 "${WORK}/widget.h"
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "mangen failed: ${rc}")
endif()
set(page "${WORK}/man/man3/rill_widget.3")
if(NOT EXISTS "${page}" OR IS_SYMLINK "${page}")
  message(FATAL_ERROR "no page ${page} named by \"Page:\"")
endif()
file(READ "${page}" body)
set(problems "")
foreach(want
    "\n.Nm rill_widget_new ,\n.Nm rill_widget_free\n.Nd widgets and gadgets\n"
    "\n.In rill/widget.h\n"
    "\n.Ft rill_status\n.Fo rill_widget_new\n.Fa \"rill_widget \\*\\*out\"\n.Fc\n"
    "#define RILL_WIDGET_QUICK 0x1u\n#define RILL_WIDGET_SLOW  0x2u\n"
    "\nOwnership:\nfree \\*out with\n.Fn rill_widget_free .\n"
    "\n.Sh EXAMPLES\n.Bd -literal -offset indent\nrill_widget \\*w;\n"
    "\n.Sh ERRORS\n.Bl -tag -width Ds\n.It Fn rill_widget_new\nRILL_E_NOMEM"
    "\n.Sh THREAD SAFETY\n.Bl -tag -width Ds\n.It Fn rill_widget_new\nsafe.\n")
  string(REGEX REPLACE "\\\\(.)" "\\1" literal "${want}")
  string(FIND "${body}" "${literal}" at)
  if(at EQUAL -1)
    list(APPEND problems "missing: ${literal}")
  endif()
endforeach()
foreach(link rill_widget_new rill_widget_free)
  set(l "${WORK}/man/man3/${link}.3")
  if(NOT IS_SYMLINK "${l}")
    list(APPEND problems "${l} is not a link to rill_widget.3")
  else()
    file(READ_SYMLINK "${l}" target)
    if(NOT target STREQUAL "rill_widget.3")
      list(APPEND problems "${l} points at ${target}")
    endif()
  endif()
endforeach()
file(READ "${WORK}/man/man7/rill.7" overview)
string(FIND "${overview}" ".It Xr rill_widget 3\nWidgets and gadgets" at)
if(at EQUAL -1)
  list(APPEND problems "rill(7) does not list rill_widget(3)")
endif()
execute_process(COMMAND "${MANDOC}" -T lint "${page}" "${WORK}/man/man7/rill.7"
                OUTPUT_VARIABLE out ERROR_VARIABLE out)
string(REGEX REPLACE "[^\n]*(referenced manual not found|mandoc\\.db)[^\n]*\n?" "" out "${out}")
if(NOT out STREQUAL "")
  list(APPEND problems "mandoc -T lint: ${out}")
endif()
if(problems)
  list(JOIN problems "\n  " t)
  message(FATAL_ERROR "mangen on a new header section:\n  ${t}\n--- page:\n${body}")
endif()
message(STATUS "mangen: a new section got its page, links, sections and example")
