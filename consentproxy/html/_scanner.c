/*
 * consentproxy.html._scanner: finds, in a stream of HTML, the few elements the
 * rewriter acts on, and passes everything else through as it came.
 *
 * Why C: the rewriter must cost little more than copying the page. Python's
 * regular-expression engine needs ~150 µs just to step over the `<` of a
 * 60 KB page on our machines; this scanner walks the page with memchr and
 * touches only tags, then builds Python objects for the ~20 elements that
 * matter (scripts, iframes, images, links, object, embed, video, audio,
 * source, track, <input type=image>, CSP <meta>, <html>, <body>, <noscript>,
 * anything tagged with data-consent-category or data-consent-declaration,
 * and any HTML element whose style attribute has a url()).
 *
 * It follows the HTML standard's tokenizer (comments, bogus comments, CDATA
 * in foreign content, RAWTEXT/RCDATA/PLAINTEXT elements, the script-data
 * escape states, attribute syntax) and the parts of tree construction that
 * change how the tokenizer reads what follows: SVG/MathML foreign content,
 * its HTML integration points and the start tags that break out of it, and
 * <template> nesting. tests/test_html_scanner.py compares it with html5lib.
 *
 * feed(bytes) -> list of bytes (copy to the output as they are) and tokens:
 *   (kind, raw start tag, name, [(attr name, value), ...], in_template,
 *    content, raw end tag, self_closing)
 * kind 0: an element (content and end tag None); 1: an HTML <script> with
 * its whole text; 2: a <noscript> with its whole (raw) text; 3: an HTML
 * <style> with its whole text, only from a scanner made with styles=True
 * (cut past the bound as a script is). Names are
 * lower-cased; values are raw (character references as written), decoded as
 * UTF-8 (surrogateescape) or, for the byte-transparent mode, latin-1. Raw
 * start tags found in the `noop` TagSet are passed through as bytes: the
 * rewriter remembers there which tags it leaves unchanged.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum { ST_DATA, ST_RAW, ST_SCRIPT, ST_PLAIN };
enum { NS_HTML, NS_SVG, NS_MATH };
enum { ESC_NONE, ESC_ESCAPED, ESC_DOUBLE };
enum { KIND_ELEMENT, KIND_SCRIPT, KIND_NOSCRIPT, KIND_STYLE };

#define MAX_DEPTH 256
#define NAME_MAX_LEN 32

typedef struct {
    char name[NAME_MAX_LEN];
    unsigned char len;
    unsigned char ns;
    unsigned char integration; /* an HTML integration point: its content is HTML */
    int html_base;             /* open HTML elements when it was opened */
} Frame;

#define MAX_OPEN 64

typedef struct {
    Py_ssize_t name, name_len, value, value_len; /* offsets in the buffer; value -1: none */
} AttrSpan;

/* Where the tag parser stopped in a tag the buffer ended in, so the next feed goes on from there instead of
 * reading the tag again from its '<'. Offsets are in the buffer the parser was given. */
enum { TS_NONE, TS_NAME, TS_BEFORE, TS_ATTR_NAME, TS_AFTER_NAME, TS_BEFORE_VALUE, TS_QUOTED, TS_UNQUOTED };

/* -- the tag parser's result ---------------------------------------------------------------------- */

typedef struct {
    Py_ssize_t end;          /* just after '>' */
    char name[NAME_MAX_LEN]; /* lower-cased; longer names are cut (none we look for is that long) */
    Py_ssize_t name_len;     /* the full length */
    int self_closing;
    int n_attrs;
    int tagged; /* has data-consent-category or data-consent-declaration */
    int role;   /* R_… flags of its name (start tags) */
    unsigned int hash; /* of its lower-cased name */
    AttrSpan *attrs;   /* the scanner's span array (start tags: every attribute, however many) */
} Tag;

typedef struct {
    int state;          /* T_…; TS_NONE: nothing to resume */
    Py_ssize_t origin;  /* the offset of the tag's name this belongs to */
    Py_ssize_t pos;     /* where to go on */
    Py_ssize_t name, name_len, value; /* the attribute being read */
    unsigned char quote;
    Tag tag;            /* what was read so far: name, hash, attribute count, flags */
} TagResume;

/* What the data state was in the middle of when the buffer ended (besides a tag: TagResume). */
enum {
    P_NONE,
    P_COMMENT, /* in a comment's text: its bytes so far are passed on, the search for "-->" goes on */
    P_GT,      /* in a bogus comment: up to the next '>' */
    P_CDATA,   /* in a CDATA section: up to "]]>" */
    P_TAG,     /* in a start tag past the bound: passed on as it comes, parsed on (TagResume) */
    P_END_TAG, /* in an end tag past the bound: the same */
    P_RAW_END, /* in the end tag of raw text past the bound: the same */
};

/* The most a scanner holds of one thing it has to see whole before handing it on: a start tag up to its
 * '>', a <script> or <noscript> text up to its end tag. Past it, a start tag is passed on unreported (a
 * <script> one neutralised), a script's first HOLD_LIMIT bytes are handed over marked cut (end tag None)
 * and the rest passed on, a <noscript>'s text dropped. The same whether the page comes whole or in pieces. */
#define HOLD_LIMIT ((Py_ssize_t)1 << 20)

typedef struct {
    PyObject_HEAD
    int latin1;
    int styles;                /* hand over HTML <style> elements with their text (a site that holds hosts) */
    struct TagSet *noop; /* raw tags to pass through, or NULL */
    char *buf;                 /* what is being scanned: `own`, or during feed() the caller's bytes */
    char *own;                 /* our buffer, `cap` bytes */
    Py_ssize_t base, len, cap; /* unconsumed input: buf[base:len] */
    int busy;                  /* in feed() or finish(): a call from inside (a finalizer) is refused */
    Py_ssize_t hold_limit;
    Py_ssize_t examined;       /* bytes the searches stepped over, summed (tests: linear whatever the chunks) */
    Py_ssize_t moved;          /* bytes moved to the front of our buffer, summed */
    Py_ssize_t cut;            /* elements past the bound (tags, scripts, noscripts) */
    int pend;                  /* P_… at offset 0 of the unconsumed input */
    Py_ssize_t pend_from;      /* where its search goes on */
    TagResume resume;
    int drop;                  /* in ST_RAW: the text is dropped (a <noscript> past the bound) */
    AttrSpan *spans;           /* the attributes of the start tag being read */
    int spans_cap;
    int state;
    char raw_name[NAME_MAX_LEN]; /* the element whose end tag ends RAWTEXT/RCDATA/script data */
    Py_ssize_t raw_len;
    PyObject *held; /* the start of a token whose text is being collected (script, noscript) */
    Py_ssize_t scan; /* in ST_SCRIPT/ST_RAW: where scanning resumes (the text starts at 0) */
    int esc, dashes;
    Frame frames[MAX_DEPTH];
    int depth;       /* open foreign elements and their integration points */
    int overflow;    /* foreign elements not tracked beyond MAX_DEPTH */
    long templates;
    /* open HTML elements (hashes of their names), roughly: enough to see which HTML end tag closes an
     * SVG or MathML element left open (`<a><svg><path/></a>`) */
    unsigned int open[MAX_OPEN];
    int n_open;
} Scanner;

/* -- small helpers ---------------------------------------------------------------------------- */

/* The offset of the first `c` in buf[i:len], or -1. A few 16-byte steps inline first: most of what is
 * searched (the text between two tags, an attribute value) is short, and a call costs more than it. */
static inline Py_ssize_t find_byte(const char *buf, Py_ssize_t i, Py_ssize_t len, char c)
{
#ifdef __SSE2__
    const __m128i needle = _mm_set1_epi8(c);
    for (int step = 0; step < 4 && i + 16 <= len; step++, i += 16) {
        __m128i block = _mm_loadu_si128((const __m128i *)(buf + i));
        unsigned int m = (unsigned int)_mm_movemask_epi8(_mm_cmpeq_epi8(block, needle));
        if (m)
            return i + __builtin_ctz(m);
    }
#endif
    if (i >= len)
        return -1;
    const char *p = memchr(buf + i, c, (size_t)(len - i));
    return p ? p - buf : -1;
}

/* The unconsumed input, which all offsets below are relative to. */
static inline const char *B(const Scanner *s) { return s->buf + s->base; }
static inline Py_ssize_t L(const Scanner *s) { return s->len - s->base; }

static inline int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r'; }
static inline int is_alpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
static inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c; }

/* Whether buf[at:] starts with `word` (lower case), ASCII case-insensitively; -1 when too short to tell. */
static int starts_ci(const char *buf, Py_ssize_t at, Py_ssize_t len, const char *word, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        if (at + i >= len)
            return -1;
        if (lower((unsigned char)buf[at + i]) != (unsigned char)word[i])
            return 0;
    }
    return 1;
}

static int name_is(const char *name, Py_ssize_t len, const char *word)
{
    return (Py_ssize_t)strlen(word) == len && memcmp(name, word, (size_t)len) == 0;
}

static int name_in(const char *name, Py_ssize_t len, const char *const *words)
{
    for (; *words; words++)
        if (name_is(name, len, *words))
            return 1;
    return 0;
}

/* What a start tag's name means to us, found with one switch (every start tag of the page asks). */
enum {
    R_REPORT = 1,      /* handed to the rewriter */
    R_SCRIPT = 2,
    R_NOSCRIPT = 4,
    R_RAW = 8,         /* RAWTEXT or RCDATA: no tags until its end tag */
    R_META = 16,       /* handed over when it has http-equiv */
    R_SVG = 32,
    R_MATH = 64,
    R_TEMPLATE = 128,
    R_PLAINTEXT = 256,
    R_BREAKOUT = 512,  /* leaves foreign content */
    R_FONT = 1024,     /* leaves foreign content with color, face or size */
    R_VOID = 2048,     /* has no end tag */
    R_INPUT = 4096,    /* handed over when its type is image (it loads its src) */
    R_STYLE = 8192,    /* handed over with its text when the scanner was asked for styles */
};

#define IS(word) (memcmp(n, word, sizeof(word) - 1) == 0)

static int role_of(const char *n, Py_ssize_t len)
{
    switch (len) {
    case 1:
        return (n[0] == 'b' || n[0] == 'i' || n[0] == 'p' || n[0] == 's' || n[0] == 'u') ? R_BREAKOUT : 0;
    case 2:
        if (n[0] == 'h' && n[1] >= '1' && n[1] <= '6')
            return R_BREAKOUT;
        if (IS("br") || IS("hr"))
            return R_BREAKOUT | R_VOID;
        return (IS("dd") || IS("dl") || IS("dt") || IS("em") || IS("li") || IS("ol") ||
                IS("tt") || IS("ul")) ? R_BREAKOUT : 0;
    case 3:
        if (IS("img"))
            return R_REPORT | R_BREAKOUT | R_VOID;
        if (IS("col") || IS("wbr"))
            return R_VOID;
        if (IS("svg"))
            return R_SVG;
        if (IS("xmp"))
            return R_RAW;
        return (IS("big") || IS("div") || IS("pre") || IS("sub") || IS("sup") || IS("var")) ? R_BREAKOUT : 0;
    case 4:
        if (IS("body"))
            return R_REPORT | R_BREAKOUT;
        if (IS("html"))
            return R_REPORT;
        if (IS("link"))
            return R_REPORT | R_VOID;
        if (IS("meta"))
            return R_META | R_BREAKOUT | R_VOID;
        if (IS("base"))
            return R_REPORT | R_VOID; /* a base URL: what we inject then names our origin */
        if (IS("area"))
            return R_VOID;
        if (IS("math"))
            return R_MATH;
        if (IS("font"))
            return R_FONT;
        return (IS("code") || IS("head") || IS("menu") || IS("nobr") || IS("ruby") || IS("span")) ? R_BREAKOUT : 0;
    case 5:
        if (IS("image"))
            return R_REPORT | R_VOID; /* the parser makes it an <img> */
        if (IS("embed"))
            return R_REPORT | R_BREAKOUT | R_VOID;
        if (IS("video") || IS("audio"))
            return R_REPORT; /* src, poster */
        if (IS("track"))
            return R_REPORT | R_VOID;
        if (IS("input"))
            return R_INPUT | R_VOID;
        if (IS("param"))
            return R_VOID;
        if (IS("style"))
            return R_RAW | R_STYLE;
        if (IS("title"))
            return R_RAW;
        return (IS("small") || IS("table")) ? R_BREAKOUT : 0;
    case 6:
        if (IS("script"))
            return R_SCRIPT;
        if (IS("iframe"))
            return R_REPORT | R_RAW;
        if (IS("object"))
            return R_REPORT;
        if (IS("source"))
            return R_REPORT | R_VOID; /* src, srcset */
        if (IS("keygen"))
            return R_VOID;
        return (IS("center") || IS("strong") || IS("strike")) ? R_BREAKOUT : 0;
    case 7:
        if (IS("noembed"))
            return R_RAW;
        return IS("listing") ? R_BREAKOUT : 0;
    case 8:
        if (IS("noscript"))
            return R_NOSCRIPT;
        if (IS("noframes") || IS("textarea"))
            return R_RAW;
        return IS("template") ? R_TEMPLATE : 0;
    case 9:
        return IS("plaintext") ? R_PLAINTEXT : 0;
    case 10:
        return IS("blockquote") ? R_BREAKOUT : 0;
    default:
        return 0;
    }
}

#undef IS

/* Character classes for the tag parser's loops. */
enum { C_WS = 1, C_SLASH = 2, C_GT = 4, C_EQ = 8, C_NUL = 16 };
static unsigned char CLS[256];
static unsigned char LOWER[256];

static void init_classes(void)
{
    CLS[' '] = CLS['\t'] = CLS['\n'] = CLS['\f'] = CLS['\r'] = C_WS;
    CLS['/'] = C_SLASH;
    CLS['>'] = C_GT;
    CLS['='] = C_EQ;
    CLS[0] = C_NUL;
    for (int c = 0; c < 256; c++)
        LOWER[c] = lower((unsigned char)c);
}

static const char *const MATHML_TEXT[] = {"mi", "mo", "mn", "ms", "mtext", NULL};
static const char *const SVG_HTML[] = {"foreignobject", "desc", "title", NULL};

/* -- the tag parser --------------------------------------------------------------------------- */

/* Room for one more attribute span; -1 (MemoryError set) when there is none. */
static int grow_spans(Scanner *self)
{
    int cap = self->spans_cap ? self->spans_cap * 2 : 32;
    AttrSpan *grown = PyMem_Realloc(self->spans, (size_t)cap * sizeof(AttrSpan));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->spans = grown;
    self->spans_cap = cap;
    return 0;
}

/* The scanned buffer always ends in a NUL byte just past its end (bytes objects do; our own buffer keeps
 * one), so the tag parser's loops test one table entry per byte instead of also testing the length: a
 * NUL stops them, and is stepped over when it is not that sentinel. */

/* Step over bytes of none of the classes in `stop`. */
static inline Py_ssize_t span_until(const unsigned char *b, Py_ssize_t i, Py_ssize_t len, unsigned char stop)
{
    for (;;) {
        while (!(CLS[b[i]] & (stop | C_NUL)))
            i++;
        if (b[i] != 0 || i >= len)
            return i;
        i++; /* a NUL in the markup */
    }
}

/* Step over bytes of the classes in `keep` (never NUL, so the sentinel stops it). */
static inline Py_ssize_t span_while(const unsigned char *b, Py_ssize_t i, unsigned char keep)
{
    while (CLS[b[i]] & keep)
        i++;
    return i;
}

/* Read a tag name starting at `at`, from `i` on (hash so far `h`), into tag (lower-cased, cut to
 * NAME_MAX_LEN, its full length, its hash): the offset after it. Names end at a space, '/' or '>'. (A
 * 16-byte SSE2 reading was tried: fewer instructions, but slower, since each step waits for the one
 * before; names are short.) */
static inline Py_ssize_t read_name(const unsigned char *b, Py_ssize_t at, Py_ssize_t i, Py_ssize_t len, Tag *tag,
                                   unsigned int h)
{
    for (;;) {
        unsigned char c = b[i];
        if ((CLS[c] & (C_WS | C_SLASH | C_GT | C_NUL)) && (c != 0 || i >= len))
            break;
        c = LOWER[c];
        h = h * 31u + c;
        if (i - at < NAME_MAX_LEN)
            tag->name[i - at] = (char)c;
        i++;
    }
    tag->name_len = i - at;
    tag->hash = h;
    return i;
}

/* One attribute being read: where (its sub-state TS_ATTR_NAME…TS_UNQUOTED and offset) and what so far. */
typedef struct {
    int state;
    Py_ssize_t pos, name, name_len, value;
    unsigned char quote;
} AttrState;

/* Keep where a tag the buffer ended in stopped (`a`: in an attribute; NULL: at `state`, offset `pos`). */
static void keep_resume(TagResume *r, int state, Py_ssize_t at, Py_ssize_t pos, const Tag *tag, const AttrState *a)
{
    if (r == NULL)
        return;
    r->state = a ? a->state : state;
    r->origin = at;
    r->pos = a ? a->pos : pos;
    if (a) {
        r->name = a->name;
        r->name_len = a->name_len;
        r->value = a->value;
        r->quote = a->quote;
    }
    r->tag = *tag;
}

/* Read one attribute from where `a` is to its end: the offset after it, -1 when the buffer ends first (`a`
 * then says where), -2 on MemoryError. Inlined with a->state known, each call site is straight code (the
 * resumable entry points stay out of the tag parser's loop, which GCC would no longer optimise). */
static inline __attribute__((always_inline)) Py_ssize_t read_attr(Scanner *self, const char *buf, Py_ssize_t len,
                                                                  Tag *tag, int keep, AttrState *a)
{
    const unsigned char *b = (const unsigned char *)buf;
    Py_ssize_t i = a->pos, j = a->pos, value = a->value, value_len = 0, close;
    unsigned char q = a->quote;
    switch (a->state) {
    case TS_ATTR_NAME: /* the first character, which may be '=', is behind */
        i = span_until(b, i, len, C_WS | C_SLASH | C_GT | C_EQ);
        if (i >= len) {
            a->pos = i;
            return -1;
        }
        a->name_len = i - a->name;
        j = i;
        /* fall through */
    case TS_AFTER_NAME:
        j = span_while(b, j, C_WS);
        if (j >= len) {
            a->state = TS_AFTER_NAME;
            a->pos = j;
            return -1;
        }
        value = -1;
        if (b[j] != '=') {
            i = j; /* no value; what follows starts the next attribute */
            break;
        }
        j++;
        /* fall through */
    case TS_BEFORE_VALUE:
        j = span_while(b, j, C_WS);
        if (j >= len) {
            a->state = TS_BEFORE_VALUE;
            a->pos = j;
            return -1;
        }
        q = b[j];
        if (q != '"' && q != '\'') {
            value = j; /* unquoted; empty when '>' follows the '=' at once */
            goto unquoted;
        }
        value = j + 1;
        j = value;
        /* fall through */
    case TS_QUOTED:
        close = find_byte(buf, j, len, (char)q);
        if (close < 0) {
            a->state = TS_QUOTED;
            a->pos = len;
            a->value = value;
            a->quote = q;
            return -1;
        }
        value_len = close - value;
        i = close + 1;
        break;
    default: /* TS_UNQUOTED */
    unquoted:
        j = span_until(b, j, len, C_WS | C_GT);
        if (j >= len) {
            a->state = TS_UNQUOTED;
            a->pos = j;
            a->value = value;
            return -1;
        }
        value_len = j - value;
        i = j;
        break;
    }
    if (keep) {
        Py_ssize_t name = a->name, name_len = a->name_len;
        if (name_len == 21 && LOWER[b[name]] == 'd' && starts_ci(buf, name, len, "data-consent-category", 21) == 1)
            tag->tagged = 1;
        else if (name_len == 24 && LOWER[b[name]] == 'd' &&
                 starts_ci(buf, name, len, "data-consent-declaration", 24) == 1)
            tag->tagged = 1; /* the rewriter fills it with the site's cookie declaration */
        if (tag->n_attrs == self->spans_cap && grow_spans(self) < 0)
            return -2;
        tag->attrs = self->spans;
        AttrSpan *s = &tag->attrs[tag->n_attrs++];
        s->name = name;
        s->name_len = name_len;
        s->value = value;
        s->value_len = value_len;
    }
    return i;
}

/* The tag's attributes from `i` (before an attribute name) to its '>'; `start`: where this reading began. */
static inline __attribute__((always_inline)) int read_attrs(Scanner *self, const char *buf, Py_ssize_t at,
                                                            Py_ssize_t i, Py_ssize_t len, Tag *tag, int keep,
                                                            TagResume *r, Py_ssize_t start)
{
    const unsigned char *b = (const unsigned char *)buf;
    for (;;) {
        /* before attribute name: a '/' not followed by '>' counts as a space */
        for (;;) {
            i = span_while(b, i, C_WS);
            if (b[i] != '/')
                break;
            if (i + 1 >= len)
                goto more;
            if (b[i + 1] == '>') {
                tag->self_closing = 1;
                i++;
                break;
            }
            i++;
        }
        if (i >= len)
            goto more;
        if (b[i] == '>') {
            tag->end = i + 1;
            self->examined += tag->end - start;
            if (r != NULL)
                r->state = TS_NONE;
            return 0;
        }
        AttrState a = {TS_ATTR_NAME, i + 1, i, 0, -1, 0};
        Py_ssize_t next = read_attr(self, buf, len, tag, keep, &a);
        if (next == -2)
            return -2;
        if (next < 0) {
            self->examined += len - start;
            keep_resume(r, 0, at, 0, tag, &a);
            return -1;
        }
        i = next;
    }
more:
    self->examined += len - start;
    keep_resume(r, TS_BEFORE, at, i, tag, NULL);
    return -1;
}

/* parse_tag for a tag the buffer ended in before: on from where it stopped. */
static __attribute__((noinline)) int parse_tag_on(Scanner *self, const char *buf, Py_ssize_t at, Py_ssize_t len,
                                                 Tag *tag, int keep, TagResume *r)
{
    Py_ssize_t start = r->pos, i = r->pos;
    *tag = r->tag;
    tag->attrs = keep ? self->spans : NULL;
    if (r->state == TS_NAME) {
        i = read_name((const unsigned char *)buf, at, i, len, tag, tag->hash);
        if (i >= len) {
            self->examined += len - start;
            keep_resume(r, TS_NAME, at, i, tag, NULL);
            return -1;
        }
    } else if (r->state != TS_BEFORE) {
        AttrState a = {r->state, r->pos, r->name, r->name_len, r->value, r->quote};
        i = read_attr(self, buf, len, tag, keep, &a);
        if (i == -2)
            return -2;
        if (i < 0) {
            self->examined += len - start;
            keep_resume(r, 0, at, 0, tag, &a);
            return -1;
        }
    }
    return read_attrs(self, buf, at, i, len, tag, keep, r, start);
}

/* Parse the tag whose name starts at `at`, keeping its attributes' spans in self->spans when `keep` is set
 * (start tags); 0 when complete, -1 when the buffer ends first, -2 on MemoryError. buf[len] must be NUL.
 * With `r`, a tag the buffer ended in is read on from where it stopped (r->origin == at), and where it
 * stops now is kept there: each byte of a tag is read once however the tag comes in pieces. */
static int parse_tag(Scanner *self, const char *buf, Py_ssize_t at, Py_ssize_t len, Tag *tag, int keep,
                     TagResume *r)
{
    if (r != NULL && r->state != TS_NONE && r->origin == at)
        return parse_tag_on(self, buf, at, len, tag, keep, r);
    tag->self_closing = 0;
    tag->n_attrs = 0;
    tag->attrs = keep ? self->spans : NULL;
    tag->tagged = 0;
    Py_ssize_t i = read_name((const unsigned char *)buf, at, at, len, tag, 0);
    if (i >= len) {
        self->examined += len - at;
        keep_resume(r, TS_NAME, at, i, tag, NULL);
        return -1;
    }
    return read_attrs(self, buf, at, i, len, tag, keep, r, at);
}

/* The resume point and attribute spans of a pending tag, after the first `d` bytes of the input were
 * consumed (once per tag: from then on its '<' is at offset 0). */
static void shift_resume(Scanner *self, Py_ssize_t d, int keep)
{
    TagResume *r = &self->resume;
    if (d == 0 || r->state == TS_NONE)
        return;
    r->origin -= d;
    r->pos -= d;
    r->name -= d;
    if (r->value >= 0)
        r->value -= d;
    if (keep) {
        for (int k = 0; k < r->tag.n_attrs; k++) {
            self->spans[k].name -= d;
            if (self->spans[k].value >= 0)
                self->spans[k].value -= d;
        }
    }
}

/* -- building tokens -------------------------------------------------------------------------- */

static PyObject *decode(Scanner *self, const char *s, Py_ssize_t n)
{
    if (self->latin1)
        return PyUnicode_DecodeLatin1(s, n, NULL);
    return PyUnicode_DecodeUTF8(s, n, "surrogateescape");
}

static PyObject *lower_name(Scanner *self, const char *s, Py_ssize_t n)
{
    char small[64];
    char *tmp = n <= (Py_ssize_t)sizeof small ? small : PyMem_Malloc((size_t)n);
    if (tmp == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++)
        tmp[i] = (char)lower((unsigned char)s[i]);
    PyObject *out = decode(self, tmp, n);
    if (tmp != small)
        PyMem_Free(tmp);
    return out;
}

/* The attribute list of a token: every attribute, duplicates included, in document order. */
static PyObject *attr_list(Scanner *self, const Tag *tag)
{
    PyObject *list = PyList_New(tag->n_attrs);
    if (list == NULL)
        return NULL;
    for (int k = 0; k < tag->n_attrs; k++) {
        const AttrSpan *a = &tag->attrs[k];
        PyObject *name = lower_name(self, B(self) + a->name, a->name_len);
        PyObject *value = name ? decode(self, a->value >= 0 ? B(self) + a->value : "", a->value_len) : NULL;
        PyObject *pair = value ? PyTuple_Pack(2, name, value) : NULL;
        Py_XDECREF(name);
        Py_XDECREF(value);
        if (pair == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, k, pair);
    }
    return list;
}

/* A token's tuple, its content and end tag still None. */
static PyObject *make_token(Scanner *self, int kind, const Tag *tag, PyObject *raw)
{
    PyObject *name = PyUnicode_DecodeLatin1(tag->name, tag->name_len < NAME_MAX_LEN ? tag->name_len : NAME_MAX_LEN,
                                            NULL);
    PyObject *attrs = name ? attr_list(self, tag) : NULL;
    PyObject *token = attrs ? PyTuple_New(8) : NULL;
    if (token == NULL) {
        Py_XDECREF(name);
        Py_XDECREF(attrs);
        return NULL;
    }
    PyTuple_SET_ITEM(token, 0, PyLong_FromLong(kind));
    Py_INCREF(raw);
    PyTuple_SET_ITEM(token, 1, raw);
    PyTuple_SET_ITEM(token, 2, name);
    PyTuple_SET_ITEM(token, 3, attrs);
    PyTuple_SET_ITEM(token, 4, PyBool_FromLong(self->templates > 0));
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(token, 5, Py_None);
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(token, 6, Py_None);
    PyTuple_SET_ITEM(token, 7, PyBool_FromLong(tag->self_closing));
    if (PyTuple_GET_ITEM(token, 0) == NULL) {
        Py_DECREF(token);
        return NULL;
    }
    return token;
}

/* Append buf[from:to] to the output as bytes. */
static int emit_bytes(Scanner *self, PyObject *out, Py_ssize_t from, Py_ssize_t to)
{
    if (to <= from)
        return 0;
    PyObject *b = PyBytes_FromStringAndSize(B(self) + from, to - from);
    if (b == NULL)
        return -1;
    int rc = PyList_Append(out, b);
    Py_DECREF(b);
    return rc;
}

/* -- the set of raw tags to pass through ------------------------------------------------------- */

/* A set of bytes (raw start tags) that the scanner can ask about a span of its buffer without making a
 * bytes object and hashing it with SipHash first: a page asks ~50 times, for tags of ~150 bytes. Open
 * addressing, keyed by a 64-bit hash seeded per process, every hit confirmed with memcmp. */
typedef struct TagSet {
    PyObject_HEAD
    Py_ssize_t cap; /* slots, a power of two; 0 before the first add */
    Py_ssize_t used;
    uint64_t *hashes;
    PyObject **keys; /* bytes; NULL: an empty slot */
} TagSet;

static uint64_t SEED;

static uint64_t span_hash(const char *s, Py_ssize_t n)
{
    uint64_t h = SEED ^ ((uint64_t)n * 0x9E3779B97F4A7C15ull);
    for (; n >= 8; s += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 29;
    }
    uint64_t w = 0;
    memcpy(&w, s, (size_t)n);
    h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 32);
}

/* The slot holding this span, or the empty slot where it would go. */
static Py_ssize_t tagset_slot(const TagSet *set, uint64_t h, const char *s, Py_ssize_t n)
{
    Py_ssize_t mask = set->cap - 1, k = (Py_ssize_t)(h & (uint64_t)mask);
    for (;; k = (k + 1) & mask) {
        PyObject *key = set->keys[k];
        if (key == NULL || (set->hashes[k] == h && PyBytes_GET_SIZE(key) == n &&
                            memcmp(PyBytes_AS_STRING(key), s, (size_t)n) == 0))
            return k;
    }
}

static int tagset_has(const TagSet *set, const char *s, Py_ssize_t n)
{
    return set->used > 0 && set->keys[tagset_slot(set, span_hash(s, n), s, n)] != NULL;
}

static int tagset_grow(TagSet *set)
{
    Py_ssize_t cap = set->cap ? set->cap * 2 : 64;
    uint64_t *hashes = PyMem_Calloc((size_t)cap, sizeof *hashes);
    PyObject **keys = PyMem_Calloc((size_t)cap, sizeof *keys);
    if (hashes == NULL || keys == NULL) {
        PyMem_Free(hashes);
        PyMem_Free(keys);
        PyErr_NoMemory();
        return -1;
    }
    TagSet old = *set;
    set->cap = cap;
    set->hashes = hashes;
    set->keys = keys;
    for (Py_ssize_t k = 0; k < old.cap; k++) {
        if (old.keys[k] != NULL) {
            Py_ssize_t to = tagset_slot(set, old.hashes[k], PyBytes_AS_STRING(old.keys[k]),
                                        PyBytes_GET_SIZE(old.keys[k]));
            set->hashes[to] = old.hashes[k];
            set->keys[to] = old.keys[k];
        }
    }
    PyMem_Free(old.hashes);
    PyMem_Free(old.keys);
    return 0;
}

static PyObject *TagSet_add(TagSet *self, PyObject *tag)
{
    if (!PyBytes_CheckExact(tag)) {
        PyErr_SetString(PyExc_TypeError, "TagSet holds bytes");
        return NULL;
    }
    if ((self->used + 1) * 2 > self->cap && tagset_grow(self) < 0)
        return NULL;
    const char *s = PyBytes_AS_STRING(tag);
    Py_ssize_t n = PyBytes_GET_SIZE(tag);
    uint64_t h = span_hash(s, n);
    Py_ssize_t k = tagset_slot(self, h, s, n);
    if (self->keys[k] == NULL) {
        self->keys[k] = Py_NewRef(tag);
        self->hashes[k] = h;
        self->used++;
    }
    Py_RETURN_NONE;
}

static PyObject *TagSet_clear(TagSet *self, PyObject *Py_UNUSED(ignored))
{
    for (Py_ssize_t k = 0; k < self->cap; k++)
        Py_XDECREF(self->keys[k]);
    PyMem_Free(self->hashes);
    PyMem_Free(self->keys);
    self->hashes = NULL;
    self->keys = NULL;
    self->cap = self->used = 0;
    Py_RETURN_NONE;
}

static Py_ssize_t TagSet_len(TagSet *self) { return self->used; }

static int TagSet_contains(TagSet *self, PyObject *tag)
{
    return PyBytes_CheckExact(tag) && tagset_has(self, PyBytes_AS_STRING(tag), PyBytes_GET_SIZE(tag));
}

static void TagSet_dealloc(TagSet *self)
{
    Py_XDECREF(TagSet_clear(self, NULL));
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef TagSet_methods[] = {
    {"add", (PyCFunction)TagSet_add, METH_O, "Remember a raw tag."},
    {"clear", (PyCFunction)TagSet_clear, METH_NOARGS, "Forget every tag."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods TagSet_sequence = {
    .sq_length = (lenfunc)TagSet_len,
    .sq_contains = (objobjproc)TagSet_contains,
};

static PyTypeObject TagSetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "consentproxy.html._scanner.TagSet",
    .tp_basicsize = sizeof(TagSet),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Raw start tags the scanner passes through as bytes.",
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)TagSet_dealloc,
    .tp_methods = TagSet_methods,
    .tp_as_sequence = &TagSet_sequence,
};

/* -- tree construction, as far as it changes tokenizing --------------------------------------- */

static int in_foreign(Scanner *self)
{
    return self->depth > 0 && !self->frames[self->depth - 1].integration;
}

static void push(Scanner *self, const Tag *tag, int ns, int integration)
{
    if (self->overflow || self->depth >= MAX_DEPTH) { /* counted only, until they close again */
        self->overflow++;
        return;
    }
    Frame *f = &self->frames[self->depth++];
    f->len = (unsigned char)(tag->name_len < NAME_MAX_LEN ? tag->name_len : NAME_MAX_LEN);
    memcpy(f->name, tag->name, f->len);
    f->ns = (unsigned char)ns;
    f->integration = (unsigned char)integration;
    f->html_base = self->n_open;
}

static inline unsigned int name_hash(const Tag *tag)
{
    return tag->hash;
}

/* An HTML start tag: its element is open until its end tag. */
static void open_html(Scanner *self, const Tag *tag)
{
    if (!(tag->role & (R_VOID | R_RAW | R_PLAINTEXT)) && self->n_open < MAX_OPEN)
        self->open[self->n_open++] = name_hash(tag);
}

/* The open HTML element an end tag closes, searched down to `floor`: its index, or -1. */
static int find_open(Scanner *self, const Tag *tag, int floor)
{
    unsigned int h = name_hash(tag);
    for (int k = self->n_open - 1; k >= floor; k--)
        if (self->open[k] == h)
            return k;
    return -1;
}

/* Pop the foreign elements from frames[depth] on, and the HTML elements opened inside them. */
static void pop_frames(Scanner *self, int depth)
{
    if (depth < self->depth && self->n_open > self->frames[depth].html_base)
        self->n_open = self->frames[depth].html_base;
    self->depth = depth;
}

/* Pop foreign elements down to the nearest integration point (or out of foreign content). */
static void break_out(Scanner *self)
{
    self->overflow = 0;
    int depth = self->depth;
    while (depth > 0 && !self->frames[depth - 1].integration)
        depth--;
    pop_frames(self, depth);
}

static int attr_value_is(Scanner *self, const Tag *tag, const char *name, const char *const *values)
{
    for (int k = 0; k < tag->n_attrs; k++) {
        const AttrSpan *a = &tag->attrs[k];
        if (a->name_len != (Py_ssize_t)strlen(name) || starts_ci(B(self), a->name, L(self), name, a->name_len) != 1)
            continue;
        if (values == NULL)
            return 1;
        for (const char *const *v = values; *v; v++) {
            Py_ssize_t n = (Py_ssize_t)strlen(*v);
            if (a->value >= 0 && a->value_len == n && starts_ci(B(self), a->value, L(self), *v, n) == 1)
                return 1;
        }
        return 0; /* only the first of duplicate attributes counts */
    }
    return 0;
}

static const char *const IMAGE_TYPE[] = {"image", NULL};

/* Whether a start tag's style attribute (the first) holds "url(", in any case: what it names loads like an
 * image (an ad widget's background-image). One pass over the value, memchr from parenthesis to parenthesis. */
static int style_url(Scanner *self, const Tag *tag)
{
    for (int k = 0; k < tag->n_attrs; k++) {
        const AttrSpan *a = &tag->attrs[k];
        if (a->name_len != 5 || starts_ci(B(self), a->name, L(self), "style", 5) != 1)
            continue;
        if (a->value < 0)
            return 0;
        const char *v = B(self) + a->value;
        Py_ssize_t n = a->value_len;
        for (Py_ssize_t i = 3; i < n; i++) {
            const char *p = memchr(v + i, '(', (size_t)(n - i));
            if (p == NULL)
                return 0;
            i = p - v;
            if (lower((unsigned char)v[i - 3]) == 'u' && lower((unsigned char)v[i - 2]) == 'r' &&
                lower((unsigned char)v[i - 1]) == 'l')
                return 1;
        }
        return 0;
    }
    return 0;
}
static const char *const HTML_ENCODINGS[] = {"text/html", "application/xhtml+xml", NULL};

/* Whether "<![CDATA[" starts a CDATA section: the current node is an SVG or MathML element, an integration
 * point too (no HTML element open in it); in HTML content it starts a bogus comment. */
static int cdata_allowed(Scanner *self)
{
    return in_foreign(self) || (self->depth > 0 && self->n_open <= self->frames[self->depth - 1].html_base);
}

/* <mglyph> or <malignmark> in a MathML text integration point: a MathML element, the one exception there. */
static int mathml_glyph(Scanner *self, const Tag *tag)
{
    if (self->depth == 0 || self->overflow)
        return 0;
    const Frame *top = &self->frames[self->depth - 1];
    return top->integration && top->ns == NS_MATH && !name_is(top->name, top->len, "annotation-xml") &&
           (name_is(tag->name, tag->name_len, "mglyph") || name_is(tag->name, tag->name_len, "malignmark"));
}

/* A start tag in foreign content: 1 when it breaks out into HTML (the caller handles it as HTML). */
static int foreign_start(Scanner *self, const Tag *tag)
{
    const char *n = tag->name;
    Py_ssize_t len = tag->name_len;
    if ((tag->role & R_BREAKOUT) ||
        ((tag->role & R_FONT) && (attr_value_is(self, tag, "color", NULL) || attr_value_is(self, tag, "face", NULL) ||
                                     attr_value_is(self, tag, "size", NULL)))) {
        break_out(self);
        return 1;
    }
    const Frame *top = &self->frames[self->depth - 1];
    if ((tag->role & R_SVG) && top->ns == NS_MATH && name_is(top->name, top->len, "annotation-xml"))
        return 1;
    if (tag->self_closing)
        return 0;
    int ns = self->depth > 0 ? self->frames[self->depth - 1].ns : NS_SVG;
    int integration = 0;
    if (ns == NS_SVG)
        integration = name_in(n, len, SVG_HTML);
    else if (ns == NS_MATH)
        integration = name_in(n, len, MATHML_TEXT) ||
                      (name_is(n, len, "annotation-xml") && attr_value_is(self, tag, "encoding", HTML_ENCODINGS));
    push(self, tag, ns, integration);
    return 0;
}

static void end_tag(Scanner *self, const Tag *tag)
{
    if (self->depth == 0 || self->frames[self->depth - 1].integration) {
        /* HTML content: it closes an HTML element opened there (an integration point is a boundary) */
        int floor = self->depth ? self->frames[self->depth - 1].html_base : 0;
        int html_current = self->n_open > floor;
        int k = find_open(self, tag, floor);
        if (k >= 0)
            self->n_open = k;
        if (self->depth == 0) {
            if (name_is(tag->name, tag->name_len, "template") && self->templates > 0)
                self->templates--;
            return;
        }
        /* an HTML element in the integration point is the current node: the HTML rules, which stop at the
         * integration point (special, and a scope boundary), so the end tag closes nothing beyond it */
        if (html_current && !self->overflow && !name_is(tag->name, tag->name_len, "template"))
            return;
    }
    if (self->overflow) {
        self->overflow--;
        return;
    }
    if (!self->frames[self->depth - 1].integration &&
        (name_is(tag->name, tag->name_len, "br") || name_is(tag->name, tag->name_len, "p"))) {
        break_out(self);
        return;
    }
    if (name_is(tag->name, tag->name_len, "template") && self->frames[self->depth - 1].integration &&
        self->templates > 0) {
        self->templates--;
        return;
    }
    Py_ssize_t n = tag->name_len < NAME_MAX_LEN ? tag->name_len : NAME_MAX_LEN;
    int ip = self->depth - 1; /* the nearest integration point below, or -1 */
    while (ip >= 0 && !self->frames[ip].integration)
        ip--;
    for (int k = self->depth - 1; k >= 0; k--) {
        if (self->frames[k].len == n && memcmp(self->frames[k].name, tag->name, (size_t)n) == 0) {
            pop_frames(self, k);
            return;
        }
    }
    if (self->frames[self->depth - 1].integration)
        return;
    /* an end tag of an HTML element the foreign content sits in closes that content too */
    int k = find_open(self, tag, ip >= 0 ? self->frames[ip].html_base : 0);
    if (k >= 0) {
        self->n_open = k;
        self->depth = ip + 1;
    }
}

/* -- raw text --------------------------------------------------------------------------------- */

/* Whether an end tag of the raw-text element starts at `at` ("</name" and a space, '/' or '>'):
 * 1 yes, 0 no, -1 cannot tell yet. */
static int raw_end_at(Scanner *self, Py_ssize_t at)
{
    const char *buf = B(self);
    Py_ssize_t n = self->raw_len, len = L(self);
    if (at + 1 >= len)
        return -1;
    if (buf[at + 1] != '/')
        return 0;
    int r = starts_ci(buf, at + 2, len, self->raw_name, n);
    if (r != 1)
        return r;
    if (at + 2 + n >= len)
        return -1;
    unsigned char c = (unsigned char)buf[at + 2 + n];
    return is_ws(c) || c == '/' || c == '>';
}

/* Script data (with its escape states) from self->scan: the offset of the end tag's '<', or -1 (then
 * self->scan is where to resume). */
static Py_ssize_t find_script_end(Scanner *self, int final)
{
    const char *buf = B(self);
    Py_ssize_t len = L(self), i = self->scan;
    while (i < len) {
        unsigned char c = (unsigned char)buf[i];
        if (self->esc == ESC_NONE) {
            Py_ssize_t lt = find_byte(buf, i, len, '<');
            if (lt < 0) {
                i = len;
                break;
            }
            i = lt;
            int end = raw_end_at(self, i);
            if (end == 1)
                return i;
            int open = starts_ci(buf, i + 1, len, "!--", 3);
            if ((end < 0 || open < 0) && !final) {
                self->scan = i;
                return -1;
            }
            if (open == 1) {
                self->esc = ESC_ESCAPED;
                self->dashes = 2;
                i += 4;
            } else {
                i++;
            }
            continue;
        }
        if (c == '-') {
            self->dashes++;
            i++;
            continue;
        }
        if (c == '>') {
            if (self->dashes >= 2)
                self->esc = ESC_NONE;
            self->dashes = 0;
            i++;
            continue;
        }
        self->dashes = 0;
        if (c != '<') {
            i++;
            continue;
        }
        if (self->esc == ESC_ESCAPED) {
            int end = raw_end_at(self, i);
            if (end == 1)
                return i;
            int open = starts_ci(buf, i + 1, len, "script", 6);
            if (open == 1 && i + 7 >= len)
                open = -1;
            if ((end < 0 || open < 0) && !final) {
                self->scan = i;
                return -1;
            }
            if (open == 1) {
                unsigned char after = (unsigned char)buf[i + 7];
                if (is_ws(after) || after == '/' || after == '>') {
                    self->esc = ESC_DOUBLE;
                    i += 7;
                    continue;
                }
            }
            i++;
        } else { /* double escaped: "</script" goes back to escaped */
            int end = raw_end_at(self, i);
            if (end < 0 && !final) {
                self->scan = i;
                return -1;
            }
            if (end == 1) {
                self->esc = ESC_ESCAPED;
                i += 8;
                continue;
            }
            i++;
        }
    }
    self->scan = i;
    return -1;
}

/* RAWTEXT/RCDATA from self->scan: the offset of the end tag's '<', or -1 (self->scan: where to resume). */
static Py_ssize_t find_raw_end(Scanner *self, int final)
{
    const char *buf = B(self);
    Py_ssize_t i = self->scan, len = L(self);
    while (i < len) {
        Py_ssize_t lt = find_byte(buf, i, len, '<');
        if (lt < 0) {
            i = len;
            break;
        }
        i = lt;
        int end = raw_end_at(self, i);
        if (end == 1)
            return i;
        if (end < 0 && !final)
            break;
        i++;
    }
    self->scan = i;
    return -1;
}

/* -- the main loop ---------------------------------------------------------------------------- */

/* A comment's text from `from` on: the offset after its end, or -1 and in *resume where to search again
 * (every byte before it is comment text that cannot start the end). */
static Py_ssize_t comment_text_end(Scanner *self, const char *buf, Py_ssize_t from, Py_ssize_t len,
                                   Py_ssize_t *resume)
{
    Py_ssize_t i = from, end = -1;
    for (;;) {
        const char *dd = i + 1 < len ? memmem(buf + i, (size_t)(len - i), "--", 2) : NULL;
        if (dd == NULL) {
            *resume = len - 1 > i ? len - 1 : i; /* a last '-' may start the end */
            break;
        }
        Py_ssize_t k = dd - buf + 2;
        while (k < len && buf[k] == '-')
            k++;
        if (k >= len || (buf[k] == '!' && k + 1 >= len)) {
            *resume = k - 2; /* the last two dashes: the run goes on from there */
            break;
        }
        if (buf[k] == '>') {
            end = k + 1;
            break;
        }
        if (buf[k] == '!' && buf[k + 1] == '>') {
            end = k + 2;
            break;
        }
        i = k;
    }
    self->examined += (end < 0 ? len : end) - from;
    return end;
}

/* Find the end of a comment whose "<!--" starts at `at`: the offset after it, or -1 (*resume: where its
 * text search goes on, or `at` when it has not started). */
static Py_ssize_t comment_end(Scanner *self, const char *buf, Py_ssize_t at, Py_ssize_t len, Py_ssize_t *resume)
{
    Py_ssize_t i = at + 4;
    *resume = at;
    if (i < len && buf[i] == '>')
        return i + 1; /* <!--> */
    if (i + 1 < len && buf[i] == '-' && buf[i + 1] == '>')
        return i + 2; /* <!---> */
    if (i + 1 >= len)
        return -1;
    return comment_text_end(self, buf, i, len, resume);
}

static Py_ssize_t char_end(Scanner *self, const char *buf, Py_ssize_t at, Py_ssize_t len, char c, Py_ssize_t *resume)
{
    Py_ssize_t p = find_byte(buf, at, len, c);
    self->examined += (p < 0 ? len : p) - at;
    *resume = len;
    return p < 0 ? -1 : p + 1;
}

static Py_ssize_t cdata_end(Scanner *self, const char *buf, Py_ssize_t at, Py_ssize_t len, Py_ssize_t *resume)
{
    const char *p = at < len ? memmem(buf + at, (size_t)(len - at), "]]>", 3) : NULL;
    self->examined += (p ? (p - buf) + 3 : len) - at;
    *resume = len - 2 > at ? len - 2 : at;
    return p ? (p - buf) + 3 : -1;
}

/* Hand a finished script/noscript token out: its text is buf[0:at], its end tag buf[at:end]; `end` -1: the
 * text was cut at the bound (the end tag stays None, what follows comes as bytes). */
static int finish_held(Scanner *self, PyObject *out, Py_ssize_t at, Py_ssize_t end)
{
    PyObject *content = PyBytes_FromStringAndSize(B(self), at);
    PyObject *close = content == NULL ? NULL : end < 0 ? Py_NewRef(Py_None)
                                                       : PyBytes_FromStringAndSize(B(self) + at, end - at);
    if (close == NULL) {
        Py_XDECREF(content);
        return -1;
    }
    PyObject *token = self->held;
    self->held = NULL;
    PyTuple_SET_ITEM(token, 5, content); /* the slots held None */
    Py_DECREF(Py_None);
    PyTuple_SET_ITEM(token, 6, close);
    Py_DECREF(Py_None);
    int rc = PyList_Append(out, token);
    Py_DECREF(token);
    return rc;
}

/* Drop the first n bytes of the unconsumed input. */
static void consume(Scanner *self, Py_ssize_t n)
{
    if (n > 0)
        self->base += n;
}

/* A held script or noscript whose text is longer than the bound: hand it over cut (a script with its first
 * hold_limit bytes, a noscript with none, its text dropped up to its end tag). */
static Py_ssize_t cut_held(Scanner *self, PyObject *out)
{
    int noscript = PyLong_AsLong(PyTuple_GET_ITEM(self->held, 0)) == KIND_NOSCRIPT;
    Py_ssize_t keep = noscript ? 0 : self->hold_limit;
    self->cut++;
    if (finish_held(self, out, keep, -1) < 0)
        return -1;
    self->drop = noscript;
    consume(self, keep);
    self->scan -= keep;
    return keep;
}

/* Raw text states: 1 when the element ended (state is ST_DATA again), 0 when more input is needed. */
static int run_raw(Scanner *self, PyObject *out, int final)
{
    Py_ssize_t from = self->scan;
    Py_ssize_t at = self->state == ST_SCRIPT ? find_script_end(self, final) : find_raw_end(self, final);
    self->examined += (at < 0 ? self->scan : at) - from;
    if (self->held != NULL &&
        (at >= 0 ? at : final ? L(self) : self->scan) > self->hold_limit) { /* (scan: no end tag before it) */
        Py_ssize_t kept = cut_held(self, out);
        if (kept < 0)
            return -1;
        if (at >= 0)
            at -= kept;
    }
    if (at < 0) {
        if (!final) {
            if (self->held == NULL) { /* nothing to hold: pass the text on */
                if (!self->drop && emit_bytes(self, out, 0, self->scan) < 0)
                    return -1;
                consume(self, self->scan);
                self->scan = 0;
            }
            return 0;
        }
        at = L(self); /* the document ends inside the element */
    }
    Py_ssize_t end = at, stop;
    int open_end = 0; /* the end tag goes on past the buffer, and past the bound */
    if (at < L(self)) {
        Tag tag;
        if (parse_tag(self, B(self), at + 2, L(self), &tag, 0, &self->resume) < 0) {
            if (!final) {
                if (L(self) - at <= self->hold_limit) {
                    self->scan = at;
                    return 0;
                }
                open_end = 1;
            }
            end = L(self);
        } else {
            end = tag.end;
        }
    }
    /* an end tag longer than the bound goes out as it comes, after its element, handed over as cut */
    int long_end = open_end || end - at > self->hold_limit;
    stop = open_end ? self->resume.pos : end;
    if (long_end)
        self->cut++;
    if (self->held != NULL) {
        if (finish_held(self, out, at, long_end ? -1 : end) < 0 || (long_end && emit_bytes(self, out, at, stop) < 0))
            return -1;
    } else if (emit_bytes(self, out, self->drop ? at : 0, stop) < 0) {
        return -1;
    }
    consume(self, stop);
    self->state = ST_DATA;
    self->scan = 0;
    self->esc = ESC_NONE;
    self->dashes = 0;
    self->drop = 0;
    if (open_end) {
        self->pend = P_RAW_END;
        shift_resume(self, stop, 0);
    } else {
        self->resume.state = TS_NONE;
    }
    return 1;
}
static void enter_raw(Scanner *self, int state, const Tag *tag)
{
    self->state = state;
    self->raw_len = tag->name_len < NAME_MAX_LEN ? tag->name_len : NAME_MAX_LEN;
    memcpy(self->raw_name, tag->name, (size_t)self->raw_len);
    self->scan = 0;
    self->esc = ESC_NONE;
    self->dashes = 0;
}

/* A start tag in HTML: whether to report it, and the tokenizer state it switches to. */
static int html_start(Scanner *self, const Tag *tag, int *kind)
{
    int role = tag->role;
    *kind = KIND_ELEMENT;
    if (!role) {
        if (self->n_open < MAX_OPEN)
            self->open[self->n_open++] = name_hash(tag);
        return tag->tagged;
    }
    if (role & R_SCRIPT) {
        *kind = KIND_SCRIPT;
        return 1;
    }
    if (role & R_NOSCRIPT) {
        *kind = KIND_NOSCRIPT;
        return 1;
    }
    if ((role & R_STYLE) && self->styles) {
        *kind = KIND_STYLE; /* raw text, held whole like a script's (cut past the bound the same way) */
        return 1;
    }
    if (!(role & (R_SVG | R_MATH)))
        open_html(self, tag);
    int report = tag->tagged || (role & R_REPORT);
    if (role & R_META)
        report = report || attr_value_is(self, tag, "http-equiv", NULL);
    else if (role & R_INPUT)
        report = report || attr_value_is(self, tag, "type", IMAGE_TYPE);
    else if (role & (R_SVG | R_MATH)) {
        if (!tag->self_closing) {
            push(self, tag, (role & R_SVG) ? NS_SVG : NS_MATH, 0);
        }
    } else if (role & R_TEMPLATE)
        self->templates++;
    return report;
}


/* A complete start tag: the tokenizer state it leads to, and whether to report it (its kind in *kind). */
static int start_tag_seen(Scanner *self, Tag *tag, int *kind)
{
    tag->role = tag->name_len <= 10 ? role_of(tag->name, tag->name_len) : 0;
    *kind = KIND_ELEMENT;
    if (in_foreign(self) || mathml_glyph(self, tag)) {
        /* SVG's <image> loads its href (or xlink:href): reported when it has one (one in MathML loads nothing) */
        int svg_image = (tag->role & R_REPORT) && !self->overflow && self->frames[self->depth - 1].ns == NS_SVG &&
                        name_is(tag->name, tag->name_len, "image") &&
                        (attr_value_is(self, tag, "href", NULL) || attr_value_is(self, tag, "xlink:href", NULL));
        if (!foreign_start(self, tag))
            return svg_image;
    }
    int report = html_start(self, tag, kind);
    if (!report && *kind == KIND_ELEMENT && tag->n_attrs > 0 && style_url(self, tag))
        report = 1;
    if (*kind == KIND_SCRIPT)
        enter_raw(self, ST_SCRIPT, tag);
    else if (*kind == KIND_NOSCRIPT || (tag->role & R_RAW))
        enter_raw(self, ST_RAW, tag);
    else if (tag->role & R_PLAINTEXT)
        self->state = ST_PLAIN;
    return report;
}

/* Pass on buf[lt:to], the start of a tag past the bound whose '<' is at lt (its name read when `named`): a
 * <script> gets ` type="text/plain"` after its name (the first of duplicate attributes counts: whatever
 * type it names later, it does not run, nor load its src). */
static int emit_cut_tag(Scanner *self, PyObject *out, Py_ssize_t lt, Py_ssize_t to, const Tag *tag, int named)
{
    self->cut++;
    if (named && name_is(tag->name, tag->name_len, "script")) {
        Py_ssize_t name_end = lt + 1 + tag->name_len;
        if (emit_bytes(self, out, lt, name_end) < 0)
            return -1;
        PyObject *plain = PyBytes_FromString(" type=\"text/plain\"");
        int rc = plain ? PyList_Append(out, plain) : -1;
        Py_XDECREF(plain);
        if (rc < 0)
            return -1;
        lt = name_end;
    }
    return emit_bytes(self, out, lt, to);
}

/* A tag past the bound has ended (its attributes were not kept): as the scanner goes on after it. */
static void cut_tag_seen(Scanner *self, Tag *tag, int start)
{
    if (!start) {
        end_tag(self, tag);
        return;
    }
    int kind;
    tag->n_attrs = 0;
    tag->tagged = 0;
    start_tag_seen(self, tag, &kind);
    if (kind == KIND_NOSCRIPT)
        self->drop = 1;
}

static PyObject *run(Scanner *self, int final)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    Tag tag;
    for (;;) {
        if (self->state == ST_PLAIN) {
            if (emit_bytes(self, out, 0, L(self)) < 0)
                goto error;
            consume(self, L(self));
            return out;
        }
        if (self->state != ST_DATA) {
            int r = run_raw(self, out, final);
            if (r < 0)
                goto error;
            if (r == 0)
                return out;
        }
        /* data state: emit from 0 up to each reported tag */
        const char *buf = B(self);
        Py_ssize_t len = L(self), i = 0, done = 0, emitted = 0, resume = 0;
        int switched = 0;
        if (self->pend != P_NONE) {
            /* in a comment, bogus comment or CDATA section, or a tag past the bound, whose bytes so far
             * went out with the last feed */
            int pend = self->pend;
            Py_ssize_t next;
            if (pend >= P_TAG) {
                next = parse_tag(self, buf, self->resume.origin, len, &tag, 0, &self->resume) < 0 ? -1 : tag.end;
                resume = self->resume.pos;
            } else if (pend == P_COMMENT) {
                next = comment_text_end(self, buf, self->pend_from, len, &resume);
            } else if (pend == P_CDATA) {
                next = cdata_end(self, buf, self->pend_from, len, &resume);
            } else {
                next = char_end(self, buf, self->pend_from, len, '>', &resume);
            }
            if (next < 0) {
                if (final) {
                    resume = len;
                    self->pend = P_NONE;
                    self->resume.state = TS_NONE;
                }
                if (emit_bytes(self, out, 0, resume) < 0)
                    goto error;
                consume(self, resume);
                self->pend_from = 0;
                if (self->pend >= P_TAG)
                    shift_resume(self, resume, 0);
                return out;
            }
            self->pend = P_NONE;
            if (pend != P_RAW_END && pend >= P_TAG) {
                cut_tag_seen(self, &tag, pend == P_TAG);
                switched = self->state != ST_DATA;
            }
            i = done = next;
        }
        int stream = P_NONE, keep_spans = 0;
        while (!switched) {
            Py_ssize_t from = i;
            i = find_byte(buf, i, len, '<');
            self->examined += (i < 0 ? len : i) - from;
            if (i < 0) {
                done = len;
                break;
            }
            done = i;
            if (i + 1 >= len) {
                if (final)
                    done = len;
                break;
            }
            unsigned char c = (unsigned char)buf[i + 1];
            Py_ssize_t next;
            resume = i; /* where a construct the buffer ends in is taken up again: from its '<' */
            stream = P_GT;
            if (c == '!') {
                int comment = starts_ci(buf, i + 2, len, "--", 2);
                int cdata = cdata_allowed(self) ? starts_ci(buf, i + 2, len, "[cdata[", 7) : 0;
                if (cdata == 1 && memcmp(buf + i + 2, "[CDATA[", 7) != 0)
                    cdata = 0; /* case-sensitive */
                if (comment < 0 || cdata < 0) {
                    /* "<!-" or "<![CDA" at the end: wait, unless the rest cannot become one */
                    next = -1;
                } else if (comment == 1) {
                    next = comment_end(self, buf, i, len, &resume);
                    stream = P_COMMENT;
                } else if (cdata == 1) {
                    next = cdata_end(self, buf, i + 9, len, &resume);
                    stream = P_CDATA;
                } else {
                    next = char_end(self, buf, i + 2, len, '>', &resume);
                }
            } else if (c == '?') {
                next = char_end(self, buf, i + 2, len, '>', &resume);
            } else if (c == '/') {
                if (i + 2 >= len) {
                    next = -1;
                } else if (is_alpha((unsigned char)buf[i + 2])) {
                    stream = P_END_TAG;
                    if (parse_tag(self, buf, i + 2, len, &tag, 0, &self->resume) < 0) {
                        next = -1;
                        resume = self->resume.pos;
                    } else {
                        next = tag.end;
                        if (next - i > self->hold_limit)
                            self->cut++;
                        end_tag(self, &tag);
                    }
                } else if (buf[i + 2] == '>') {
                    next = i + 3;
                } else {
                    next = char_end(self, buf, i + 2, len, '>', &resume);
                }
            } else if (is_alpha(c)) {
                stream = P_TAG;
                keep_spans = 1;
                int parsed = parse_tag(self, buf, i + 1, len, &tag, 1, &self->resume);
                if (parsed == -2)
                    goto error;
                if (parsed < 0) {
                    next = -1;
                    resume = self->resume.pos;
                } else {
                    next = tag.end;
                    if (next - i > self->hold_limit) { /* too long to hold (had it come in pieces) */
                        if (emit_bytes(self, out, emitted, i) < 0 || emit_cut_tag(self, out, i, next, &tag, 1) < 0)
                            goto error;
                        emitted = next;
                        cut_tag_seen(self, &tag, 1);
                        switched = self->state != ST_DATA;
                    } else {
                        int kind, report = start_tag_seen(self, &tag, &kind);
                        switched = self->state != ST_DATA;
                        if (report && !(kind == KIND_ELEMENT && self->noop != NULL &&
                                        tagset_has(self->noop, buf + i, next - i))) {
                            PyObject *raw = PyBytes_FromStringAndSize(buf + i, next - i);
                            PyObject *token = raw ? make_token(self, kind, &tag, raw) : NULL;
                            Py_XDECREF(raw);
                            if (token == NULL || emit_bytes(self, out, emitted, i) < 0) {
                                Py_XDECREF(token);
                                goto error;
                            }
                            if (kind == KIND_ELEMENT) {
                                int rc = PyList_Append(out, token);
                                Py_DECREF(token);
                                if (rc < 0)
                                    goto error;
                            } else {
                                self->held = token;
                            }
                            emitted = next;
                        }
                    }
                }
            } else {
                next = i + 1; /* a '<' that starts nothing */
            }
            if (next < 0) {
                if (final) {
                    done = len;
                    self->resume.state = TS_NONE;
                } else if (stream == P_TAG || stream == P_END_TAG) {
                    if (len - i > self->hold_limit) {
                        /* a tag longer than the bound: passed on as it comes, unreported */
                        if (emit_bytes(self, out, emitted, i) < 0 ||
                            emit_cut_tag(self, out, i, resume, &tag,
                                         stream == P_TAG && self->resume.state != TS_NAME) < 0)
                            goto error;
                        self->pend = stream;
                        emitted = done = resume;
                        shift_resume(self, resume, 0);
                    } else {
                        shift_resume(self, i, keep_spans); /* held from its '<', at 0 from now on */
                    }
                } else if (resume > i) {
                    /* comment text: passed on as it comes (nothing in it is acted on) */
                    self->pend = stream;
                    self->pend_from = 0;
                    done = resume;
                }
                break;
            }
            i = done = next;
        }
        if (emit_bytes(self, out, emitted, done) < 0)
            goto error;
        consume(self, done);
        if (!switched)
            return out;
        /* the raw text starts here */
    }
error:
    Py_DECREF(out);
    return NULL;
}

/* -- the Python type -------------------------------------------------------------------------- */

/* Add bytes after the unconsumed input in our buffer. The consumed bytes before it are dropped (the rest
 * moved to the front) only when they are at least as many as the rest, or room is needed: each byte is
 * moved at most once per byte consumed before it, so moving costs no more than scanning. */
static int append(Scanner *self, const char *data, Py_ssize_t n)
{
    Py_ssize_t rest = self->len - self->base;
    if (self->base > 0 && (self->base >= rest || self->len + n + 1 > self->cap)) {
        memmove(self->own, self->own + self->base, (size_t)rest);
        self->moved += rest;
        self->len = rest;
        self->base = 0;
    }
    if (self->len + n + 1 > self->cap) { /* + 1: the NUL the tag parser stops at */
        Py_ssize_t cap = self->cap ? self->cap : 4096;
        while (cap < self->len + n + 1)
            cap *= 2;
        char *grown = PyMem_Realloc(self->own, (size_t)cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        self->own = grown;
        self->cap = cap;
    }
    self->buf = self->own;
    memcpy(self->own + self->len, data, (size_t)n);
    self->len += n;
    self->own[self->len] = 0;
    return 0;
}

/* feed() and finish() are not re-entrant: run() makes Python objects, and an allocation may start the
 * garbage collector, whose finalizers run Python code (which may also let another thread in). Such a call
 * is refused rather than let it scan or grow the buffer under the outer call. */
static int enter(Scanner *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner.feed/finish called while the scanner is busy");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static PyObject *Scanner_feed(Scanner *self, PyObject *arg)
{
    if (enter(self) < 0)
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        self->busy = 0;
        return NULL;
    }
    PyObject *out;
    if (self->base == self->len && PyBytes_CheckExact(arg)) {
        /* nothing pending: scan the caller's bytes where they are (a bytes object ends in a NUL, as our
         * buffer does), keep only what is left over. `buf` is borrowed meanwhile; `own` and `cap` stay
         * ours. */
        self->buf = view.buf;
        self->base = 0;
        self->len = view.len;
        out = run(self, 0);
        const char *tail = self->buf + self->base;
        Py_ssize_t rest = self->len - self->base;
        self->buf = self->own;
        self->base = self->len = 0;
        if (out != NULL && rest > 0 && append(self, tail, rest) < 0)
            Py_CLEAR(out);
    } else {
        out = append(self, view.buf, view.len) < 0 ? NULL : run(self, 0);
    }
    PyBuffer_Release(&view);
    self->busy = 0;
    return out;
}

static PyObject *Scanner_finish(Scanner *self, PyObject *Py_UNUSED(ignored))
{
    if (enter(self) < 0)
        return NULL;
    if (self->buf == NULL && append(self, "", 0) < 0) {
        self->busy = 0;
        return NULL;
    }
    PyObject *out = run(self, 1);
    self->pend = P_NONE;
    self->resume.state = TS_NONE;
    self->busy = 0;
    return out;
}

static PyObject *Scanner_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Scanner *self = (Scanner *)PyType_GenericNew(type, args, kwds);
    if (self != NULL)
        self->hold_limit = HOLD_LIMIT;
    return (PyObject *)self;
}

static int Scanner_init(Scanner *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"latin1", "noop", "hold_limit", "styles", NULL};
    int latin1 = 0, styles = 0;
    PyObject *noop = Py_None;
    Py_ssize_t hold_limit = HOLD_LIMIT;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|pOnp", keywords, &latin1, &noop, &hold_limit, &styles))
        return -1;
    if (noop != Py_None && !Py_IS_TYPE(noop, &TagSetType)) {
        PyErr_SetString(PyExc_TypeError, "noop must be a TagSet or None");
        return -1;
    }
    if (hold_limit < 64) {
        PyErr_SetString(PyExc_ValueError, "hold_limit must be at least 64");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Scanner.__init__ called while the scanner is busy");
        return -1;
    }
    self->latin1 = latin1;
    self->styles = styles;
    self->hold_limit = hold_limit;
    Py_XSETREF(self->noop, noop == Py_None ? NULL : (TagSet *)Py_NewRef(noop));
    return 0;
}

static void Scanner_dealloc(Scanner *self)
{
    Py_XDECREF(self->noop);
    Py_XDECREF(self->held);
    PyMem_Free(self->own);
    PyMem_Free(self->spans);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Scanner_methods[] = {
    {"feed", (PyCFunction)Scanner_feed, METH_O, "Scan the next chunk: the output ready so far, as bytes and tokens."},
    {"finish", (PyCFunction)Scanner_finish, METH_NOARGS, "The end of the document: everything still held."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef Scanner_members[] = {
    {"examined", T_PYSSIZET, offsetof(Scanner, examined), READONLY,
     "Bytes the scanner's searches stepped over so far (at most a few times what it was fed)."},
    {"moved", T_PYSSIZET, offsetof(Scanner, moved), READONLY, "Bytes moved within its buffer so far."},
    {"cut", T_PYSSIZET, offsetof(Scanner, cut), READONLY,
     "Elements longer than hold_limit so far: passed on as they came (a <script> tag neutralised), a script "
     "handed over cut, a <noscript>'s text dropped."},
    {"hold_limit", T_PYSSIZET, offsetof(Scanner, hold_limit), READONLY,
     "The most it holds of a start tag, or of a script's or noscript's text."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "consentproxy.html._scanner.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Streams HTML through, reporting the elements the rewriter acts on.",
    .tp_new = Scanner_new,
    .tp_init = (initproc)Scanner_init,
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_methods = Scanner_methods,
    .tp_members = Scanner_members,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_scanner",
    .m_doc = "The HTML scanner behind consentproxy.html.rewriter.",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__scanner(void)
{
    init_classes();
    PyObject *probe = PyBytes_FromString("consentproxy tag set");
    Py_hash_t seed = probe ? PyObject_Hash(probe) : -1; /* random per process (Python's hash secret) */
    Py_XDECREF(probe);
    if (seed == -1 && PyErr_Occurred())
        return NULL;
    SEED = (uint64_t)seed;
    if (PyType_Ready(&ScannerType) < 0 || PyType_Ready(&TagSetType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddObjectRef(m, "Scanner", (PyObject *)&ScannerType) < 0 ||
        PyModule_AddObjectRef(m, "TagSet", (PyObject *)&TagSetType) < 0 ||
        PyModule_AddIntConstant(m, "ELEMENT", KIND_ELEMENT) < 0 || PyModule_AddIntConstant(m, "SCRIPT", KIND_SCRIPT) < 0 ||
        PyModule_AddIntConstant(m, "STYLE", KIND_STYLE) < 0 ||
        PyModule_AddIntConstant(m, "NOSCRIPT", KIND_NOSCRIPT) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
