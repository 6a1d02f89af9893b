/* SPDX-License-Identifier: MIT */
/*
 * mangen: the man pages of rill, made from the comments of its public headers (no other tool).
 *
 *   mangen OUTDIR DATE VERSION HEADER...
 *
 * Each section of a header that starts with a comment line of dashes ("/" "* ----") becomes one
 * page in OUTDIR/man3, named after the section's first function (or after "Page: NAME" on a line
 * of the section comment), titled by the section's heading. The rest of the section comment
 * opens the DESCRIPTION; an indented block after a line ending in "Example:" is the page's
 * EXAMPLES. Every function declared in the section (RILL_API) gets a SYNOPSIS entry and a
 * paragraph made from the doc comment before it, with its "Errors:", "Thread-safety:" and
 * "Ownership:" parts moved to ERRORS, THREAD SAFETY and DESCRIPTION's end; types and macros with
 * doc comments are shown as declared. Every other function of the family gets a symbolic link
 * OUTDIR/man3/<function>.3 to the family's page, so "man rill_write" works. OUTDIR/man7/
 * rill.7 is the overview: the top comment of the first header and the list of pages.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ITEMS 4096

enum item_kind { ITEM_FUNC, ITEM_TYPE };

struct item {
    enum item_kind kind;
    char *doc;  /* the doc comment's text, comment markers removed; may be NULL */
    char *decl; /* the declaration, whitespace-normalised for functions */
    char name[128];
};

struct section {
    char title[160];
    char page[128];
    char header[64]; /* "rill/rill.h" */
    char *intro;     /* section comment after the title, Example block removed */
    char *example;
    size_t first, count; /* items */
};

static struct item items[MAX_ITEMS];
static size_t n_items;
static struct section sections[256];
static size_t n_sections;
static char *overview; /* the top comment of the first header */
/* Types declared before the first section (rill_status, rill_error, ...): shown in rill(7). */
static size_t preamble_first, preamble_count;

_Noreturn static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("mangen: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die("out of memory");
    return p;
}

/* A growing string. */
struct buf {
    char *p;
    size_t len, cap;
};

static void buf_add(struct buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            die("out of memory");
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s)
{
    buf_add(b, s, strlen(s));
}

static char *buf_take(struct buf *b)
{
    if (!b->p)
        return xstrdup("");
    char *p = b->p;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}

static char **read_lines(const char *path, size_t *n)
{
    FILE *f = fopen(path, "r");
    if (!f)
        die("%s: %s", path, strerror(errno));
    char **lines = NULL;
    size_t count = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (count == cap) {
            cap = cap ? cap * 2 : 1024;
            lines = realloc(lines, cap * sizeof *lines);
            if (!lines)
                die("out of memory");
        }
        lines[count++] = xstrdup(line);
    }
    free(line);
    fclose(f);
    *n = count;
    return lines;
}

static int starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The text of a comment line without its " * " (or "/" "**", "*" "/") markers. */
static const char *comment_text(const char *line, int *ends)
{
    const char *p = line;
    while (*p == ' ')
        p++;
    if (starts(p, "/**<"))
        p += 4;
    else if (starts(p, "/**"))
        p += 3;
    else if (starts(p, "/*"))
        p += 2;
    else if (*p == '*' && p[1] != '/')
        p++;
    if (*p == ' ')
        p++;
    const char *end = strstr(p, "*/");
    *ends = end != NULL;
    static char out[512];
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n >= sizeof out)
        n = sizeof out - 1;
    memcpy(out, p, n);
    while (n > 0 && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
    return out;
}

/* Collect a comment starting at lines[*i]; returns its text, one line per line. */
static char *take_comment(char **lines, size_t n, size_t *i)
{
    struct buf b = { 0 };
    for (; *i < n; (*i)++) {
        int ends = 0;
        const char *t = comment_text(lines[*i], &ends);
        buf_str(&b, t);
        buf_str(&b, "\n");
        if (ends) {
            (*i)++;
            break;
        }
    }
    return buf_take(&b);
}

static void collapse_spaces(char *s)
{
    char *w = s;
    int space = 0;
    for (char *r = s; *r; r++) {
        if (isspace((unsigned char)*r)) {
            space = w != s;
            continue;
        }
        if (space && *r != ')' && *r != ',' && w[-1] != '(')
            *w++ = ' ';
        space = 0;
        *w++ = *r;
    }
    *w = '\0';
}

/* The name of the function a declaration declares: the identifier before its first "(". */
static void decl_name(const char *decl, char *name, size_t cap)
{
    const char *paren = strchr(decl, '(');
    if (!paren)
        die("no parameter list in \"%s\"", decl);
    const char *e = paren;
    while (e > decl && isspace((unsigned char)e[-1]))
        e--;
    const char *s = e;
    while (s > decl && (isalnum((unsigned char)s[-1]) || s[-1] == '_'))
        s--;
    snprintf(name, cap, "%.*s", (int)(e - s), s);
}

static struct section *new_section(const char *header, char *comment)
{
    if (n_sections == sizeof sections / sizeof sections[0])
        die("too many sections");
    struct section *sec = &sections[n_sections++];
    memset(sec, 0, sizeof *sec);
    snprintf(sec->header, sizeof sec->header, "%s", header);
    sec->first = n_items;
    /* line 1 is the dashes; the title is the first non-empty line after it */
    char *save = NULL;
    struct buf intro = { 0 }, example = { 0 };
    int in_example = 0, got_title = 0;
    for (char *line = strtok_r(comment, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (starts(line, "---"))
            continue;
        if (!got_title) {
            if (!*line)
                continue;
            snprintf(sec->title, sizeof sec->title, "%s", line);
            got_title = 1;
            continue;
        }
        if (starts(line, "Page: ")) {
            snprintf(sec->page, sizeof sec->page, "%s", line + 6);
            continue;
        }
        if (in_example && (starts(line, "    ") || !*line)) {
            buf_str(&example, *line ? line + 4 : "");
            buf_str(&example, "\n");
            continue;
        }
        in_example = 0;
        size_t len = strlen(line);
        if (len >= 8 && strcmp(line + len - 8, "Example:") == 0) {
            in_example = 1;
            if (len > 8) {
                buf_add(&intro, line, len - 8);
                buf_str(&intro, "\n");
            }
            continue;
        }
        buf_str(&intro, line);
        buf_str(&intro, "\n");
    }
    sec->intro = buf_take(&intro);
    sec->example = buf_take(&example);
    while (sec->example[0] && sec->example[strlen(sec->example) - 1] == '\n')
        sec->example[strlen(sec->example) - 1] = '\0';
    return sec;
}

static void parse_header(const char *path, const char *include_name, int first_header)
{
    size_t n = 0;
    char **lines = read_lines(path, &n);
    struct section *sec = NULL;
    char *doc = NULL;
    struct item *define_item = NULL; /* the last documented #define and where it ended */
    size_t define_end = 0;
    for (size_t i = 0; i < n;) {
        const char *l = lines[i];
        if (starts(l, "/* ---")) {
            char *c = take_comment(lines, n, &i);
            if (sec)
                sec->count = n_items - sec->first;
            else if (first_header)
                preamble_count = n_items - preamble_first;
            sec = new_section(include_name, c);
            free(c);
            free(doc);
            doc = NULL;
            continue;
        }
        if (starts(l, "/**") || (starts(l, "/*") && first_header && !overview && i < 3)) {
            char *c = take_comment(lines, n, &i);
            if (!starts(l, "/**") && first_header && !overview && !strstr(c, "SPDX")) {
                overview = c;
                continue;
            }
            free(doc);
            doc = starts(l, "/**") ? c : (free(c), NULL);
            continue;
        }
        if (starts(l, "/*")) { /* an ordinary comment: skip it */
            char *c = take_comment(lines, n, &i);
            free(c);
            continue;
        }
        if (!sec && !starts(l, "typedef ")) {
            i++;
            continue;
        }
        if (starts(l, "RILL_API ")) {
            struct buf b = { 0 };
            for (; i < n; i++) {
                buf_str(&b, lines[i]);
                buf_str(&b, " ");
                if (strchr(lines[i], ';')) {
                    i++;
                    break;
                }
            }
            struct item *it = &items[n_items++];
            it->kind = ITEM_FUNC;
            it->decl = buf_take(&b);
            collapse_spaces(it->decl);
            decl_name(it->decl, it->name, sizeof it->name);
            it->doc = doc;
            doc = NULL;
            continue;
        }
        if (starts(l, "typedef ") || starts(l, "struct ") || starts(l, "#define RILL_")) {
            size_t first_line = i;
            struct buf b = { 0 };
            int depth = 0;
            for (; i < n; i++) {
                buf_str(&b, lines[i]);
                buf_str(&b, "\n");
                for (const char *p = lines[i]; *p; p++)
                    depth += *p == '{' ? 1 : *p == '}' ? -1 : 0;
                int more = lines[i][0] && lines[i][strlen(lines[i]) - 1] == '\\';
                if (starts(l, "#define") ? !more : (depth == 0 && strchr(lines[i], ';'))) {
                    i++;
                    break;
                }
            }
            if (!doc && define_item && first_line == define_end) {
                /* an undocumented #define right after a documented one: the same group */
                struct buf joined = { 0 };
                buf_str(&joined, define_item->decl);
                buf_str(&joined, b.p);
                free(define_item->decl);
                free(buf_take(&b));
                define_item->decl = buf_take(&joined);
                define_end = i;
            } else if (doc || !starts(l, "#define")) {
                struct item *it = &items[n_items++];
                it->kind = ITEM_TYPE;
                it->decl = buf_take(&b);
                it->doc = doc;
                doc = NULL;
                define_item = starts(l, "#define") ? it : NULL;
                define_end = i;
            } else {
                free(buf_take(&b));
            }
            continue;
        }
        if (l[0] && !starts(l, "#") && !starts(l, "}")) {
            free(doc);
            doc = NULL;
        }
        i++;
        if (n_items >= MAX_ITEMS - 1)
            die("too many declarations");
    }
    if (sec)
        sec->count = n_items - sec->first;
    free(doc);
    for (size_t i = 0; i < n; i++)
        free(lines[i]);
    free(lines);
}

/* ---- mdoc output ---- */

/* Output of running text: words joined into lines of at most 80 bytes. */
struct out_line {
    FILE *f;
    char line[1024];
    size_t len;
};

static void line_flush(struct out_line *o)
{
    if (o->len) {
        o->line[o->len] = '\0';
        fprintf(o->f, "%s\n", o->line);
        o->len = 0;
    }
}

static void line_word(struct out_line *o, const char *w, size_t n)
{
    size_t need = 0;
    for (size_t i = 0; i < n; i++)
        need += w[i] == '\\' ? 2 : 1;
    if (o->len && o->len + 1 + need > 80)
        line_flush(o);
    if (o->len)
        o->line[o->len++] = ' ';
    else if (*w == '.' || *w == '\'') {
        memcpy(o->line, "\\&", 2);
        o->len = 2;
    }
    for (size_t i = 0; i < n && o->len < sizeof o->line - 3; i++) {
        if (w[i] == '\\') {
            o->line[o->len++] = '\\';
            o->line[o->len++] = 'e';
        } else {
            o->line[o->len++] = w[i];
        }
    }
}

static int is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_';
}

/*
 * Write running text as mdoc: one sentence per line, lines of at most 80 bytes, "name()" as
 * .Fn, backslashes escaped, "@p " dropped.
 */
static void put_text(FILE *f, const char *text)
{
    struct out_line o = { .f = f };
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (!*p)
            break;
        const char *w = p;
        while (*p && *p != ' ' && *p != '\n')
            p++;
        size_t n = (size_t)(p - w);
        if (n == 2 && w[0] == '@' && w[1] == 'p')
            continue;
        /* name() with only closing punctuation after it */
        size_t id = 0;
        while (id < n && is_ident(w[id]))
            id++;
        if (id > 0 && !isdigit((unsigned char)w[0]) && id + 2 <= n && w[id] == '(' &&
            w[id + 1] == ')' && strspn(w + id + 2, ".,;:)") == n - id - 2) {
            line_flush(&o);
            fprintf(f, ".Fn %.*s", (int)id, w);
            for (size_t k = id + 2; k < n; k++)
                fprintf(f, " %c", w[k]);
            fputc('\n', f);
        } else {
            line_word(&o, w, n);
        }
        /* end of sentence: the next word starts with a capital or a quote */
        size_t e = n;
        while (e > 0 && (w[e - 1] == '"' || w[e - 1] == ')'))
            e--;
        const char *next = p;
        while (*next == ' ' || *next == '\n')
            next++;
        if (e > 1 && (w[e - 1] == '.' || w[e - 1] == '?' || w[e - 1] == '!' || w[e - 1] == ':') &&
            (isupper((unsigned char)*next) || *next == '"') && !(e >= 3 && w[e - 3] == '.'))
            line_flush(&o);
    }
    line_flush(&o);
}

/* Write a comment's text: paragraphs, "- " bullets and indented code blocks. */
static void put_doc(FILE *f, const char *text)
{
    char *copy = xstrdup(text);
    char *save = NULL;
    struct buf para = { 0 };
    int in_list = 0, in_code = 0, first_para = 1;
    for (char *line = strtok_r(copy, "\n", &save);; line = strtok_r(NULL, "\n", &save)) {
        size_t indent = line ? strspn(line, " ") : 0;
        int bullet = line && indent < 4 && starts(line + indent, "- ");
        int code = line && indent >= 4 && !in_list;
        int blank = !line || !*line;
        int cont = line && in_list && indent >= 2 && !bullet && line[indent];
        if (in_code && !code) {
            fputs(".Ed\n", f);
            in_code = 0;
        }
        if (para.len && (blank || code || bullet || (in_list && !cont) || !line)) {
            if (in_list)
                fputs(".It\n", f);
            else if (!first_para)
                fputs(".Pp\n", f);
            first_para = 0;
            put_text(f, para.p);
            para.len = 0;
            para.p[0] = '\0';
        }
        if (in_list && !bullet && !cont) {
            fputs(".El\n", f);
            in_list = 0;
        }
        if (!line)
            break;
        if (code) {
            if (!in_code) {
                fputs(".Bd -literal -offset indent\n", f);
                in_code = 1;
            }
            const char *c = line + 4;
            if (*c == '.' || *c == '\'')
                fputs("\\&", f);
            for (; *c; c++) {
                if (*c == '\\')
                    fputs("\\e", f);
                else
                    fputc(*c, f);
            }
            fputc('\n', f);
            continue;
        }
        if (bullet) {
            if (!in_list) {
                fputs(".Bl -bullet\n", f);
                in_list = 1;
                first_para = 0;
            }
            buf_str(&para, line + indent + 2);
            continue;
        }
        if (blank)
            continue;
        if (para.len)
            buf_str(&para, " ");
        buf_str(&para, line + indent);
    }
    if (in_code)
        fputs(".Ed\n", f);
    free(para.p);
    free(copy);
}

/* Write a literal block (declarations, examples). */
static void put_literal(FILE *f, const char *text)
{
    fputs(".Bd -literal -offset indent\n", f);
    int start = 1;
    for (const char *p = text; *p; p++) {
        if (start && (*p == '.' || *p == '\''))
            fputs("\\&", f);
        start = *p == '\n';
        if (*p == '\\')
            fputs("\\e", f);
        else
            fputc(*p, f);
    }
    if (!start)
        fputc('\n', f);
    fputs(".Ed\n", f);
}

/* Split @p doc into the body and the parts after "Errors:", "Thread-safety:", "Ownership:". */
struct doc_parts {
    struct buf body, errors, threads, ownership;
};

static void split_doc(const char *doc, struct doc_parts *d)
{
    static const char *const keys[] = { "Errors:", "Thread-safety:", "Ownership:" };
    struct buf *targets[] = { &d->errors, &d->threads, &d->ownership };
    struct buf *cur = &d->body;
    const char *p = doc ? doc : "";
    while (*p) {
        size_t best = strlen(p);
        int which = -1;
        for (int k = 0; k < 3; k++) {
            for (const char *q = strstr(p, keys[k]); q; q = strstr(q + 1, keys[k])) {
                /* a key counts at the start of a sentence or line */
                if (q == doc || q[-1] == '\n' || (q[-1] == ' ' && q - 2 >= doc && q[-2] == '.') ||
                    (q[-1] == ' ' && q - 3 >= doc && q[-2] == ' ' && q[-3] == '.')) {
                    if ((size_t)(q - p) < best) {
                        best = (size_t)(q - p);
                        which = k;
                    }
                    break;
                }
            }
        }
        buf_add(cur, p, best);
        buf_str(cur, "\n");
        p += best;
        if (which < 0)
            break;
        p += strlen(keys[which]);
        cur = targets[which];
        if (cur->len)
            buf_str(cur, "\n");
    }
}

static void put_synopsis_func(FILE *f, const struct item *it)
{
    /* "RILL_API RILL_NODISCARD rill_status rill_read(rill_stream *s, void *buf, ...);" */
    const char *d = it->decl;
    if (starts(d, "RILL_API "))
        d += 9;
    if (starts(d, "RILL_NODISCARD "))
        d += 15;
    const char *name = strstr(d, it->name);
    while (name && (name[strlen(it->name)] != '(' && name[strlen(it->name)] != ' '))
        name = strstr(name + 1, it->name);
    if (!name)
        die("cannot find %s in %s", it->name, it->decl);
    fprintf(f, ".Ft %.*s\n", (int)(name - d - (name > d && name[-1] == ' ')), d);
    fprintf(f, ".Fo %s\n", it->name);
    const char *p = strchr(name, '(') + 1;
    int depth = 0;
    const char *start = p;
    for (; *p; p++) {
        if (*p == '(')
            depth++;
        if (*p == ')' && depth-- == 0) {
            if (p > start && strncmp(start, "void", (size_t)(p - start)) != 0)
                fprintf(f, ".Fa \"%.*s\"\n", (int)(p - start), start);
            break;
        }
        if (*p == ',' && depth == 0) {
            fprintf(f, ".Fa \"%.*s\"\n", (int)(p - start), start);
            start = p + 1;
            while (*start == ' ')
                start++;
        }
    }
    fputs(".Fc\n", f);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void mkdir_p(const char *dir)
{
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0755);
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
        die("mkdir %s: %s", tmp, strerror(errno));
}

static FILE *open_page(const char *outdir, const char *sect, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/man%s/%s.%s", outdir, sect, name, sect);
    FILE *f = fopen(path, "w");
    if (!f)
        die("%s: %s", path, strerror(errno));
    return f;
}

static void put_head(FILE *f, const char *name, const char *sect, const char *date,
                     const char *version)
{
    char upper[128];
    snprintf(upper, sizeof upper, "%s", name);
    for (char *c = upper; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    fprintf(f, ".\\\" SPDX-License-Identifier: MIT\n");
    fprintf(f, ".\\\" Generated by tools/mangen.c from the rill headers; edit the headers.\n");
    (void)version;
    fprintf(f, ".Dd %s\n.Dt %s %s\n.Os\n", date, upper, sect);
}

static void put_see_also(FILE *f, const struct section *self)
{
    fputs(".Sh SEE ALSO\n", f);
    size_t n = 0;
    const char *names[256] = { 0 };
    for (size_t s = 0; s < n_sections; s++) {
        if (&sections[s] != self && sections[s].page[0])
            names[n++] = sections[s].page;
    }
    qsort(names, n, sizeof names[0], cmp_str);
    fputs(".Xr rillcat 1 ,\n", f);
    for (size_t i = 0; i < n; i++)
        fprintf(f, ".Xr %s 3 ,\n", names[i]);
    fputs(".Xr rill 7\n", f);
}

static void write_family(const char *outdir, const struct section *sec, const char *date,
                         const char *version)
{
    FILE *f = open_page(outdir, "3", sec->page);
    put_head(f, sec->page, "3", date, version);
    fputs(".Sh NAME\n", f);
    size_t funcs = 0;
    for (size_t i = sec->first; i < sec->first + sec->count; i++)
        funcs += items[i].kind == ITEM_FUNC;
    size_t k = 0;
    for (size_t i = sec->first; i < sec->first + sec->count; i++) {
        if (items[i].kind == ITEM_FUNC)
            fprintf(f, ".Nm %s%s\n", items[i].name, ++k < funcs ? " ," : "");
    }
    char title[160];
    snprintf(title, sizeof title, "%s", sec->title);
    if (!isupper((unsigned char)title[1])) /* "Timeouts" -> "timeouts", "TLS" stays */
        title[0] = (char)tolower((unsigned char)title[0]);
    fprintf(f, ".Nd %s\n", title);
    fputs(".Sh LIBRARY\nrill (-lrill; pkg-config --cflags --libs rill)\n", f);
    fputs(".Sh SYNOPSIS\n", f);
    fprintf(f, ".In %s\n", sec->header);
    for (size_t i = sec->first; i < sec->first + sec->count; i++) {
        if (items[i].kind == ITEM_FUNC)
            put_synopsis_func(f, &items[i]);
    }

    fputs(".Sh DESCRIPTION\n", f);
    int fresh = 1; /* nothing written under the last .Sh/.Ss: no .Pp there */
    if (sec->intro[strspn(sec->intro, " \n")]) {
        put_doc(f, sec->intro);
        fresh = 0;
    }
    struct buf errors = { 0 }, threads = { 0 }, returns = { 0 };
    int types = 0;
    for (size_t i = sec->first; i < sec->first + sec->count; i++) {
        if (items[i].kind == ITEM_TYPE)
            types = 1;
    }
    if (types) {
        fputs(".Ss Types and constants\n", f);
        for (size_t i = sec->first; i < sec->first + sec->count; i++) {
            const struct item *it = &items[i];
            if (it->kind != ITEM_TYPE)
                continue;
            if (it->doc)
                put_doc(f, it->doc);
            put_literal(f, it->decl);
        }
        fputs(".Ss Functions\n", f);
        fresh = 1;
    }
    for (size_t i = sec->first; i < sec->first + sec->count; i++) {
        const struct item *it = &items[i];
        if (it->kind != ITEM_FUNC)
            continue;
        struct doc_parts d = { 0 };
        split_doc(it->doc, &d);
        fprintf(f, "%s.Fn %s\n", fresh ? "" : ".Pp\n", it->name);
        fresh = 0;
        if (!it->doc)
            fputs("is described with the function above it.\n", f);
        else if (d.body.len)
            put_doc(f, d.body.p);
        if (d.ownership.len) {
            fputs(".Pp\nOwnership:\n", f);
            put_doc(f, d.ownership.p);
        }
        if (d.errors.len) {
            buf_str(&errors, ".It Fn ");
            buf_str(&errors, it->name);
            buf_str(&errors, "\n");
            buf_str(&errors, d.errors.p);
            buf_str(&errors, "\n\001");
        }
        if (d.threads.len) {
            buf_str(&threads, ".It Fn ");
            buf_str(&threads, it->name);
            buf_str(&threads, "\n");
            buf_str(&threads, d.threads.p);
            buf_str(&threads, "\n\001");
        }
        if (strstr(it->decl, "rill_status ") && !strstr(it->decl, "(*")) {
            if (returns.len)
                buf_str(&returns, ", ");
            buf_str(&returns, it->name);
            buf_str(&returns, "()");
        }
        free(d.body.p);
        free(d.errors.p);
        free(d.threads.p);
        free(d.ownership.p);
    }

    fputs(".Sh RETURN VALUES\n", f);
    if (returns.len) {
        put_text(f, returns.p);
        fputs("return a\n.Vt rill_status :\n.Dv RILL_OK\n(0) on success,\n.Dv RILL_EOF\n"
              "at the end of a stream,\n.Dv RILL_WANT_READ\nor\n.Dv RILL_WANT_WRITE\n"
              "when a non-blocking call would wait, and a negative\n.Dv RILL_E_*\n"
              "code on error, with the message in\n.Fn rill_errmsg\non the stream or in the\n"
              ".Vt rill_error\nargument.\n",
              f);
    }
    fputs(returns.len ? ".Pp\nThe other functions return what DESCRIPTION says.\n"
                      : "The functions return what DESCRIPTION says.\n",
          f);

    fputs(".Sh EXAMPLES\n", f);
    if (sec->example[0]) {
        put_literal(f, sec->example);
    } else {
        fputs("See\n.Xr rill 7\nand the programs in the examples directory of the source.\n", f);
    }
    fputs(".Sh ERRORS\n", f);
    if (errors.len) {
        fputs(".Bl -tag -width Ds\n", f);
        for (char *e = errors.p; e && *e;) {
            char *end = strchr(e, '\001');
            if (end)
                *end = '\0';
            char *nl = strchr(e, '\n');
            fprintf(f, "%.*s\n", (int)(nl - e), e);
            put_doc(f, nl + 1);
            e = end ? end + 1 : NULL;
        }
        fputs(".El\n", f);
    }
    fputs(errors.len ? ".Pp\nOther functions of this page report errors as DESCRIPTION\n"
                       "says; the message is in\n"
                     : "Errors are reported as DESCRIPTION says; the message is in\n",
          f);
    fputs(".Fn rill_errmsg\non the stream, or in the\n.Vt rill_error\n"
          "a function that creates a stream fills.\n",
          f);

    fputs(".Sh THREAD SAFETY\n", f);
    if (threads.len) {
        fputs(".Bl -tag -width Ds\n", f);
        for (char *e = threads.p; e && *e;) {
            char *end = strchr(e, '\001');
            if (end)
                *end = '\0';
            char *nl = strchr(e, '\n');
            fprintf(f, "%.*s\n", (int)(nl - e), e);
            put_doc(f, nl + 1);
            e = end ? end + 1 : NULL;
        }
        fputs(".El\n.Pp\nFor the others:\n", f);
    }
    fputs("a stream is used by one thread at a time; different streams may be used from\n"
          "different threads at once without locking.\n",
          f);

    put_see_also(f, sec);
    fclose(f);
    free(errors.p);
    free(threads.p);
    free(returns.p);
}

static void write_links(const char *outdir, const struct section *sec)
{
    for (size_t i = sec->first; i < sec->first + sec->count; i++) {
        if (items[i].kind != ITEM_FUNC || strcmp(items[i].name, sec->page) == 0)
            continue;
        char path[1024], target[256];
        snprintf(path, sizeof path, "%s/man3/%s.3", outdir, items[i].name);
        snprintf(target, sizeof target, "%s.3", sec->page);
        if (unlink(path) < 0 && errno != ENOENT)
            die("%s: %s", path, strerror(errno));
        if (symlink(target, path) < 0)
            die("%s: %s", path, strerror(errno));
    }
}

static void write_overview(const char *outdir, const char *date, const char *version)
{
    FILE *f = open_page(outdir, "7", "rill");
    put_head(f, "rill", "7", date, version);
    fputs(".Sh NAME\n.Nm rill\n.Nd stackable network streams for C\n", f);
    fputs(".Sh DESCRIPTION\n", f);
    put_doc(f, overview ? overview : "");
    if (preamble_count) {
        fputs(".Ss Types used throughout\n", f);
        for (size_t i = preamble_first; i < preamble_first + preamble_count; i++) {
            if (items[i].doc)
                put_doc(f, items[i].doc);
            put_literal(f, items[i].decl);
        }
        fputs(".Ss Pages\n", f);
    } else {
        fputs(".Pp\n", f);
    }
    fputs("The functions are described on these pages, one per family:\n"
          ".Bl -tag -width Ds\n",
          f);
    for (size_t s = 0; s < n_sections; s++) {
        fprintf(f, ".It Xr %s 3\n", sections[s].page);
        put_text(f, sections[s].title);
    }
    fputs(".El\n", f);
    fputs(".Sh SEE ALSO\n.Xr rillcat 1\n", f);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: mangen OUTDIR DATE VERSION HEADER...\n");
        return 2;
    }
    const char *outdir = argv[1], *date = argv[2], *version = argv[3];
    for (int a = 4; a < argc; a++) {
        const char *slash = strrchr(argv[a], '/');
        char include_name[64];
        snprintf(include_name, sizeof include_name, "rill/%s", slash ? slash + 1 : argv[a]);
        parse_header(argv[a], include_name, a == 4);
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/man3", outdir);
    mkdir_p(dir);
    snprintf(dir, sizeof dir, "%s/man7", outdir);
    mkdir_p(dir);
    size_t kept = 0;
    for (size_t s = 0; s < n_sections; s++) {
        struct section *sec = &sections[s];
        if (!sec->page[0]) {
            for (size_t i = sec->first; i < sec->first + sec->count; i++) {
                if (items[i].kind == ITEM_FUNC) {
                    snprintf(sec->page, sizeof sec->page, "%s", items[i].name);
                    break;
                }
            }
        }
        if (sec->page[0])
            sections[kept++] = *sec;
        else if (sec->count)
            die("section \"%s\" declares no function to name its page after", sec->title);
    }
    n_sections = kept;
    for (size_t s = 0; s < n_sections; s++) {
        write_family(outdir, &sections[s], date, version);
        write_links(outdir, &sections[s]);
    }
    write_overview(outdir, date, version);
    return 0;
}
