// SPDX-License-Identifier: MIT
// The public headers compiled as C++ under strict warnings (test header_cxx): their inline
// functions (rill_read_line in RILL_EOL_LF mode, the line iterator) are compiled into C++
// programs, so they must build where old-style casts and 0 as a null pointer are errors.
#include <rill/rill.h>
#include <rill/stream.h>

int rill_header_cxx_lines(rill_stream *s);

int rill_header_cxx_lines(rill_stream *s)
{
    const char *line = nullptr;
    size_t len = 0;
    size_t total = 0;
    while (rill_read_line(s, &line, &len) == RILL_OK)
        total += len;
    rill_line_iter it;
    rill_line_iter_init(&it, s);
    while (rill_line_iter_held(&it) > 0 || rill_line_iter_next(&it, &line, &len) == RILL_OK)
        total += len;
    return total > 0 ? 1 : 0;
}
