/*
 * loadgen.c: a closed-loop load generator for the benchmark servers, in C so
 * that it is never what limits the rate it measures.
 *
 *   loadgen KIND PORT [--host H] [--connections N] [--window W] [--size B]
 *                     [--warmup S] [--duration S] [--server-pid PID]
 *                     [--cpu C] [--stall-timeout S]
 *
 * KIND is binary, line, amp or ceiling: the same four protocols, and the same
 * requests byte for byte, as benchmarks/_loadgen.py (an echo of B bytes of
 * 'x').  N connections each keep W requests in flight; every read's answers
 * release as many new requests, sent with one send().  One epoll loop, level
 * triggered, one recv() of up to 64 KiB per readable event (what Twisted
 * does), requests encoded from a template (only the request id changes).
 *
 * Latency is per request, from the clock reading just before the send that
 * carried it to the reading just after the recv() that completed its
 * answer, in nanoseconds, kept in a log-linear histogram (64 linear
 * sub-buckets per power of two: each bucket is within 1/64 of its values).
 *
 * Output: one JSON object on stdout.  Exit status 0 when the run completed
 * (wrong answers are counted in "errors", not fatal), 2 when the server
 * broke the protocol, refused or closed a connection, or stalled (the JSON
 * then has "fatal": the reason), 1 on a usage error.
 *
 * C99 and POSIX plus Linux's epoll, sched_setaffinity and /proc; no library
 * beyond libc.  Built on demand by benchmarks/_cloadgen.py.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum kind { K_BINARY, K_LINE, K_AMP, K_CEILING };

/* Bytes asked of each recv(); Twisted reads 64 KiB at a time too. */
#define RECV_SIZE (64 * 1024)
/* The largest frame payload we accept, and say so in our SETTINGS: 16 MiB,
 * the protocol's default (docs/protocol.md, SETTINGS). */
#define MAX_FRAME (16u * 1024u * 1024u)
/* A line answer longer than this is not one of ours: fail rather than
 * buffer without end (the server's own limit is 64 KiB). */
#define MAX_LINE (1024u * 1024u)
#define HDR 10
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define NBUCKETS (64 * SUB)

struct conn {
    int fd;
    unsigned char *in; /* bytes received and not yet parsed */
    size_t in_len, in_cap;
    unsigned char *out; /* bytes to send: out[out_off:out_len] */
    size_t out_off, out_len, out_cap;
    int want_write;
    /* In-flight requests: send times in a ring.  binary and amp index it by
     * request id (slot_id says which id holds the slot, 0: free); line and
     * ceiling answer in order, so it is a FIFO (head/tail counters). */
    uint64_t *slot_t;
    uint32_t *slot_id;
    uint32_t mask;
    uint32_t next_id;
    uint32_t head, tail;
    uint32_t in_flight;
};

/* What every connection shares. */
static enum kind kind;
static size_t body_len;
static unsigned char *body;
static unsigned char *expect; /* ceiling and line: the exact answer */
static size_t expect_len;
static unsigned char *tmpl; /* the request, id 0 (binary) or without _ask (amp) */
static size_t tmpl_len;
static uint32_t window = 1;
static int measuring;
static uint64_t hist[NBUCKETS];
static uint64_t lat_n, lat_min = UINT64_MAX, lat_max;
static uint64_t errors;
static char first_error[512];
static char fatal_msg[1024];
/* The first SETTINGS the server sent, for the report. */
static uint32_t settings_seen[16][2];
static int settings_count, settings_recorded;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Record why the run cannot go on; the caller returns -1 up to main. */
static int fail(const char *fmt, ...) {
    va_list ap;
    if (fatal_msg[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(fatal_msg, sizeof fatal_msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static void note_error(const char *fmt, ...) {
    va_list ap;
    errors++;
    if (first_error[0] == '\0') {
        va_start(ap, fmt);
        vsnprintf(first_error, sizeof first_error, fmt, ap);
        va_end(ap);
    }
}

/* Printable bytes for messages: non-ASCII as \xNN, at most max input bytes. */
static const char *show(const unsigned char *p, size_t n, size_t max) {
    static char buf[4 * 200 + 8];
    size_t i, o = 0;
    if (max > 200) max = 200;
    for (i = 0; i < n && i < max; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            buf[o++] = (char)p[i];
        else
            o += (size_t)sprintf(buf + o, "\\x%02x", p[i]);
    }
    if (n > max) o += (size_t)sprintf(buf + o, "...");
    buf[o] = '\0';
    return buf;
}

static uint32_t get_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint32_t get_u16(const unsigned char *p) { return ((uint32_t)p[0] << 8) | p[1]; }

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static void put_u16(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n);
    if (q == NULL) {
        fprintf(stderr, "loadgen: out of memory (%zu bytes)\n", n);
        exit(3);
    }
    return q;
}

/* ---- the latency histogram ---------------------------------------------- */

static int msb64(uint64_t v) {
    int n = 0;
    while (v >>= 1) n++;
    return n;
}

/* Values below 2*SUB have a bucket each; above, each power of two is cut in
 * SUB equal buckets: index = shift * SUB + (v >> shift). */
static unsigned bucket_of(uint64_t v) {
    int shift = msb64(v) - SUB_BITS;
    if (shift < 0) shift = 0;
    return (unsigned)shift * SUB + (unsigned)(v >> shift);
}

/* The middle of a bucket's range of values. */
static double bucket_value(unsigned idx) {
    unsigned shift = idx < 2 * SUB ? 0 : idx / SUB - 1;
    uint64_t low = (uint64_t)(idx - shift * SUB) << shift;
    return (double)low + (shift ? (double)((uint64_t)1 << shift) / 2.0 : 0.0);
}

static void record(uint64_t ns) {
    unsigned b = bucket_of(ns);
    if (b >= NBUCKETS) b = NBUCKETS - 1;
    hist[b]++;
    lat_n++;
    if (ns < lat_min) lat_min = ns;
    if (ns > lat_max) lat_max = ns;
}

/* Nearest rank, as benchmarks/_common.percentile: the smallest value with at
 * least ceil(q * n) values at or below it, clamped to the exact extremes. */
static double percentile_ms(double q) {
    uint64_t rank, seen = 0;
    unsigned i;
    double v;
    if (lat_n == 0) return -1.0;
    rank = (uint64_t)(q * (double)lat_n);
    if ((double)rank < q * (double)lat_n) rank++;
    if (rank < 1) rank = 1;
    for (i = 0; i < NBUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank) break;
    }
    v = bucket_value(i);
    if (v < (double)lat_min) v = (double)lat_min;
    if (v > (double)lat_max) v = (double)lat_max;
    return v / 1e6;
}

/* ---- CPU readings --------------------------------------------------------- */

static double self_cpu(double *user, double *sys) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *user = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6;
    *sys = (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    return *user + *sys;
}

/* utime + stime of a process, from /proc/PID/stat; -1 if unreadable. */
static double proc_cpu(long pid) {
    char path[64], buf[4096];
    FILE *f;
    size_t n;
    char *p;
    unsigned long long ut, st;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) return -1.0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields start after
     * the last ')'; utime and stime are the 12th and 13th after it. */
    p = strrchr(buf, ')');
    if (p == NULL) return -1.0;
    if (sscanf(p + 1, " %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) != 2)
        return -1.0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds the whole machine spent busy (/proc/stat, idle and iowait
 * excluded); -1 if unreadable. */
static double machine_busy(void) {
    unsigned long long v[8];
    FILE *f = fopen("/proc/stat", "r");
    int n;
    if (f == NULL) return -1.0;
    n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n != 8) return -1.0;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- sending -------------------------------------------------------------- */

static void out_reserve(struct conn *c, size_t more) {
    if (c->out_len + more > c->out_cap) {
        c->out_cap = (c->out_len + more) * 2;
        c->out = xrealloc(c->out, c->out_cap);
    }
}

static int set_events(int ep, struct conn *c, int write) {
    struct epoll_event ev;
    ev.events = EPOLLIN | (write ? EPOLLOUT : 0);
    ev.data.ptr = c;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) return fail("epoll_ctl: %s", strerror(errno));
    c->want_write = write;
    return 0;
}

/* Send what is queued; what the kernel does not take waits for EPOLLOUT. */
static int flush(int ep, struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_write) return set_events(ep, c, 1);
                return 0;
            }
            return fail("send: %s", strerror(errno));
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    if (c->want_write) return set_events(ep, c, 0);
    return 0;
}

/* Queue k new requests sent at time t. */
static int queue_requests(struct conn *c, uint32_t k, uint64_t t) {
    uint32_t i;
    if (kind == K_BINARY || kind == K_AMP) {
        out_reserve(c, (size_t)k * (tmpl_len + 16));
        for (i = 0; i < k; i++) {
            uint32_t id = c->next_id;
            unsigned char *p = c->out + c->out_len;
            /* A slot still held by an older request (answers may come in any
             * order) is skipped: ids must only increase, gaps are allowed
             * (docs/protocol.md, Request ids), and with twice the window in
             * slots a free one is always near. */
            while (c->slot_id[id & c->mask] != 0) {
                if (id == UINT32_MAX) return fail("request ids exhausted on a connection");
                id++;
            }
            if (id == UINT32_MAX) return fail("request ids exhausted on a connection");
            c->next_id = id + 1;
            c->slot_id[id & c->mask] = id;
            c->slot_t[id & c->mask] = t;
            if (kind == K_BINARY) {
                memcpy(p, tmpl, tmpl_len);
                put_u32(p + 6, id);
                c->out_len += tmpl_len;
            } else {
                /* _ask first, its value a hex counter as AMP's own. */
                char hex[9];
                int hl = sprintf(hex, "%x", id);
                memcpy(p, "\0\4_ask", 6);
                put_u16(p + 6, (uint32_t)hl);
                memcpy(p + 8, hex, (size_t)hl);
                memcpy(p + 8 + hl, tmpl, tmpl_len);
                c->out_len += 8 + (size_t)hl + tmpl_len;
            }
        }
    } else {
        out_reserve(c, (size_t)k * tmpl_len);
        for (i = 0; i < k; i++) {
            memcpy(c->out + c->out_len, tmpl, tmpl_len);
            c->out_len += tmpl_len;
            c->slot_t[c->tail++ & c->mask] = t;
        }
    }
    c->in_flight += k;
    return 0;
}

/* ---- receiving: each returns the answers completed, or -1 ---------------- */

/* An answer to request id arrived at t: its latency, and the slot freed. */
static int complete_id(struct conn *c, uint32_t id, uint64_t t, const char *what) {
    uint32_t s = id & c->mask;
    if (id == 0 || c->slot_id[s] != id)
        return fail("%s for request id %u, which is not in flight", what, id);
    c->slot_id[s] = 0;
    if (measuring) record(t - c->slot_t[s]);
    c->in_flight--;
    return 0;
}

static int complete_fifo(struct conn *c, uint64_t t) {
    if (c->head == c->tail) return fail("an answer arrived with no request in flight");
    if (measuring) record(t - c->slot_t[c->head & c->mask]);
    c->head++;
    c->in_flight--;
    return 0;
}

/* Check a SETTINGS payload (docs/protocol.md, SETTINGS (0x1)): entries of a
 * u16 id and a u32 value; unknown ids (0x3/0x4 for streaming, and any
 * later one) are skipped.  Our requests must fit the server's limits. */
static int take_settings(const unsigned char *p, uint32_t len, uint32_t rid) {
    uint32_t i, max_frame = MAX_FRAME, max_conc = 100;
    if (rid != 0) return fail("the server's SETTINGS has request id %u, not 0", rid);
    if (len % 6 != 0) return fail("the server's SETTINGS payload is %u bytes, not a multiple of 6", len);
    for (i = 0; i < len; i += 6) {
        uint32_t id = get_u16(p + i), value = get_u32(p + i + 2);
        if (!settings_recorded && settings_count < 16) {
            settings_seen[settings_count][0] = id;
            settings_seen[settings_count][1] = value;
            settings_count++;
        }
        if (id == 1) max_frame = value;
        if (id == 2) max_conc = value;
    }
    settings_recorded = 1;
    if (tmpl_len - HDR > max_frame)
        return fail("a request's payload (%zu bytes) exceeds the server's MAX_FRAME_SIZE %u",
                    tmpl_len - HDR, max_frame);
    if (window > max_conc)
        return fail("--window %u exceeds the server's MAX_CONCURRENT %u", window, max_conc);
    return 0;
}

static const char *frame_name(unsigned t) {
    switch (t) {
    case 0x2: return "REQUEST";
    case 0x5: return "CANCEL";
    case 0xA: return "STREAM_MESSAGE";
    case 0xB: return "STREAM_END";
    case 0xC: return "CREDIT";
    default: return "frame";
    }
}

static int feed_binary(struct conn *c, uint64_t t, size_t *used) {
    const unsigned char *b = c->in;
    size_t n = c->in_len, pos = 0;
    int done = 0;
    while (n - pos >= HDR) {
        uint32_t len = get_u32(b + pos), rid = get_u32(b + pos + 6);
        unsigned type = b[pos + 4], flags = b[pos + 5];
        const unsigned char *pl = b + pos + HDR;
        if (len > MAX_FRAME)
            return fail("the server sent a frame of %u bytes, over our MAX_FRAME_SIZE %u", len,
                        MAX_FRAME);
        if (n - pos - HDR < len) break;
        pos += HDR + len;
        switch (type) {
        case 0x3: /* RESPONSE */
            if (complete_id(c, rid, t, "RESPONSE") < 0) return -1;
            if (flags != 0 || len != body_len || memcmp(pl, body, body_len) != 0)
                note_error("RESPONSE %u: flags %u, %u bytes, not the echo of the %zu sent", rid,
                           flags, len, body_len);
            done++;
            break;
        case 0x4: /* ERROR: status u32, message length u16, message, details */
            if (complete_id(c, rid, t, "ERROR") < 0) return -1;
            if (len >= 6 && 6 + get_u16(pl + 4) <= len)
                note_error("ERROR %u: status %u: %s", rid, get_u32(pl),
                           show(pl + 6, get_u16(pl + 4), 200));
            else
                note_error("ERROR %u: malformed payload of %u bytes", rid, len);
            done++;
            break;
        case 0x6: /* PING: answer it, or the server's liveness check fails */
            if (len != 8 || rid != 0) return fail("malformed PING (%u bytes, id %u)", len, rid);
            out_reserve(c, HDR + 8);
            put_u32(c->out + c->out_len, 8);
            c->out[c->out_len + 4] = 0x7;
            c->out[c->out_len + 5] = 0;
            put_u32(c->out + c->out_len + 6, 0);
            memcpy(c->out + c->out_len + HDR, pl, 8);
            c->out_len += HDR + 8;
            break;
        case 0x7: /* PONG: we send no PING; ignore */
            break;
        case 0x1: /* a later SETTINGS replaces the first */
            if (take_settings(pl, len, rid) < 0) return -1;
            break;
        case 0x8:
            if (len >= 6 && 6 + get_u16(pl + 4) <= len)
                return fail("GOAWAY from the server: status %u: %s", get_u32(pl),
                            show(pl + 6, get_u16(pl + 4), 200));
            return fail("GOAWAY from the server (malformed, %u bytes)", len);
        case 0x2: case 0x5: case 0xA: case 0xB: case 0xC:
            /* A server may not send these, and we offered no streaming. */
            return fail("the server sent a %s frame (type 0x%x)", frame_name(type), type);
        default:
            break; /* unassigned: skipped (docs/protocol.md, Extensibility) */
        }
    }
    *used = pos;
    return done;
}

static int feed_ceiling(struct conn *c, uint64_t t, size_t *used) {
    const unsigned char *b = c->in;
    size_t n = c->in_len, pos = 0;
    int done = 0;
    while (n - pos >= 4) {
        uint32_t len = get_u32(b + pos);
        if (len > MAX_FRAME) return fail("the ceiling server sent a frame of %u bytes", len);
        if (n - pos - 4 < len) break;
        if (complete_fifo(c, t) < 0) return -1;
        if (4 + (size_t)len != expect_len || memcmp(b + pos, expect, expect_len) != 0)
            note_error("an answer of %u bytes, not the echo of the %zu sent", len, body_len);
        pos += 4 + len;
        done++;
    }
    *used = pos;
    return done;
}

static int blank(const unsigned char *p, size_t n) {
    size_t i;
    for (i = 0; i < n; i++)
        if (!strchr(" \t\r\v\f", p[i])) return 0;
    return 1;
}

static int feed_line(struct conn *c, uint64_t t, size_t *used) {
    const unsigned char *b = c->in;
    size_t n = c->in_len, pos = 0;
    int done = 0;
    for (;;) {
        const unsigned char *lf = memchr(b + pos, '\n', n - pos);
        size_t len;
        if (lf == NULL) {
            if (n - pos > MAX_LINE) return fail("a line answer over %u bytes", MAX_LINE);
            break;
        }
        len = (size_t)(lf - (b + pos)) + 1;
        if (!blank(b + pos, len - 1)) { /* blank lines are ignored (Syntax) */
            if (complete_fifo(c, t) < 0) return -1;
            if (len != expect_len || memcmp(b + pos, expect, len) != 0)
                note_error("line answer %s", show(b + pos, len, 200));
            done++;
        }
        pos += len;
    }
    *used = pos;
    return done;
}

/* Parse AMP's hex _ask counter back; 0 if it is not one of ours. */
static uint32_t parse_hex(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    size_t i;
    if (n == 0 || n > 8) return 0;
    for (i = 0; i < n; i++) {
        unsigned d = p[i];
        if (d >= '0' && d <= '9') d -= '0';
        else if (d >= 'a' && d <= 'f') d = d - 'a' + 10;
        else return 0;
        v = v * 16 + d;
    }
    return (uint32_t)v;
}

static int feed_amp(struct conn *c, uint64_t t, size_t *used) {
    const unsigned char *b = c->in;
    size_t n = c->in_len, pos = 0;
    int done = 0;
    for (;;) {
        /* One box: (u16 key length, key, u16 value length, value)* then an
         * empty key. */
        size_t p = pos;
        const unsigned char *answer = NULL, *err = NULL, *desc = NULL;
        size_t answer_len = 0, err_len = 0, desc_len = 0;
        int complete = 0, body_ok = 0;
        while (p + 2 <= n) {
            size_t klen = get_u16(b + p), kend, vlen, vstart;
            p += 2;
            if (klen == 0) {
                complete = 1;
                break;
            }
            kend = p + klen;
            if (kend + 2 > n) break;
            vlen = get_u16(b + kend);
            vstart = kend + 2;
            if (vstart + vlen > n) break;
            if (klen == 7 && memcmp(b + p, "_answer", 7) == 0) {
                answer = b + vstart;
                answer_len = vlen;
            } else if (klen == 6 && memcmp(b + p, "_error", 6) == 0) {
                err = b + vstart;
                err_len = vlen;
            } else if (klen == 18 && memcmp(b + p, "_error_description", 18) == 0) {
                desc = b + vstart;
                desc_len = vlen;
            } else if (klen == 4 && memcmp(b + p, "body", 4) == 0) {
                body_ok = vlen == body_len && memcmp(b + vstart, body, vlen) == 0;
            }
            p = vstart + vlen;
        }
        if (!complete) break;
        pos = p;
        if (answer != NULL) {
            if (complete_id(c, parse_hex(answer, answer_len), t, "AMP _answer") < 0) return -1;
            if (!body_ok) note_error("AMP answer %s: not the echo of the body sent",
                                     show(answer, answer_len, 16));
        } else if (err != NULL) {
            if (complete_id(c, parse_hex(err, err_len), t, "AMP _error") < 0) return -1;
            note_error("AMP _error: %s", desc ? show(desc, desc_len, 200) : "(no description)");
        } else {
            return fail("an AMP box with neither _answer nor _error");
        }
        done++;
    }
    *used = pos;
    return done;
}

/* ---- connections ---------------------------------------------------------- */

static int connect_to(const char *host, const char *port, double timeout) {
    struct addrinfo hints, *res, *ai;
    struct timeval tv;
    int fd = -1, one = 1, rc;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) return fail("%s:%s: %s", host, port, gai_strerror(rc));
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) continue;
        tv.tv_sec = (time_t)timeout;
        tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
        rc = errno;
        close(fd);
        fd = -1;
        errno = rc;
    }
    freeaddrinfo(res);
    if (fd < 0) return fail("connecting to %s:%s: %s", host, port, strerror(errno));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void in_reserve(struct conn *c, size_t more) {
    if (c->in_len + more > c->in_cap) {
        c->in_cap = c->in_len + more;
        c->in = xrealloc(c->in, c->in_cap);
    }
}

/* Our preface and SETTINGS, then the server's first frame: SETTINGS, or a
 * GOAWAY refusing us (docs/protocol.md, Handshake).  What follows it stays
 * in c->in for the main loop. */
static int handshake(struct conn *c) {
    static const unsigned char hello[] = {
        0x89, 'R', 'Q', 'R', '\r', '\n', 0x1a, '\n', 0, 1, /* preface, version 1 */
        0, 0, 0, 12, 1, 0, 0, 0, 0, 0,                     /* SETTINGS, 12 bytes */
        0, 1, 1, 0, 0, 0,                                  /* MAX_FRAME_SIZE 16 MiB */
        0, 2, 0, 0, 0, 100,                                /* MAX_CONCURRENT 100 */
    };
    if (send(c->fd, hello, sizeof hello, MSG_NOSIGNAL) != (ssize_t)sizeof hello)
        return fail("sending the preface: %s", strerror(errno));
    for (;;) {
        ssize_t r;
        if (c->in_len >= HDR) {
            uint32_t len = get_u32(c->in);
            unsigned type = c->in[4];
            const unsigned char *pl = c->in + HDR;
            if (type != 0x1 && type != 0x8)
                return fail("not a reqresp binary server: its first bytes are %s",
                            show(c->in, c->in_len, 80));
            if (len > MAX_FRAME)
                return fail("the server's first frame announces %u bytes", len);
            if (c->in_len >= HDR + (size_t)len) {
                if (type == 0x8) {
                    if (len >= 6 && 6 + get_u16(pl + 4) <= len)
                        return fail("the server refused the connection: GOAWAY status %u: %s",
                                    get_u32(pl), show(pl + 6, get_u16(pl + 4), 200));
                    return fail("the server refused the connection with a malformed GOAWAY");
                }
                if (take_settings(pl, len, get_u32(c->in + 6)) < 0) return -1;
                memmove(c->in, c->in + HDR + len, c->in_len - HDR - len);
                c->in_len -= HDR + len;
                return 0;
            }
        }
        in_reserve(c, RECV_SIZE);
        r = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
        if (r == 0) return fail("the server closed the connection during the handshake");
        if (r < 0) {
            if (errno == EINTR) continue;
            return fail("waiting for the server's SETTINGS: %s", strerror(errno));
        }
        c->in_len += (size_t)r;
    }
}

/* ---- output --------------------------------------------------------------- */

static void json_str(const char *s) {
    putchar('"');
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') printf("\\%c", ch);
        else if (ch < 0x20) printf("\\u%04x", ch);
        else putchar(ch);
    }
    putchar('"');
}

static void json_num(const char *key, double v) {
    if (v < 0) printf(", \"%s\": null", key);
    else printf(", \"%s\": %.9g", key, v);
}

static const char *kind_names[] = {"binary", "line", "amp", "ceiling"};

static int usage(const char *why) {
    fprintf(stderr,
            "loadgen: %s\nusage: loadgen binary|line|amp|ceiling PORT [--host H] "
            "[--connections N] [--window W] [--size BYTES] [--warmup S] [--duration S] "
            "[--server-pid PID] [--cpu C] [--stall-timeout S]\n",
            why);
    return 1;
}

static int parse_num(const char *s, double lo, double hi, double *out) {
    char *end;
    double v;
    errno = 0;
    v = strtod(s, &end);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *port;
    double conns_d = 1, window_d = 1, size_d = 64, warmup = 0.5, duration = 3.0;
    double pid_d = 0, cpu_d = -1, stall = 10.0;
    int nconns, ep = -1, i, pinned = 0, rc = 0;
    struct conn *conns;
    struct epoll_event evs[256];
    uint64_t start, measure_at, end_at, last_progress, win_start = 0, win_end;
    uint64_t completed = 0;
    double cpu0 = 0, cpu1, u0 = 0, s0 = 0, u1, s1, srv0 = -1, srv1, busy0 = -1, busy1;
    long server_pid;

    if (argc < 3) return usage("KIND and PORT are required");
    for (i = 0; i < 4; i++)
        if (strcmp(argv[1], kind_names[i]) == 0) break;
    if (i == 4) return usage("KIND must be binary, line, amp or ceiling");
    kind = (enum kind)i;
    port = argv[2];
    for (i = 3; i < argc; i += 2) {
        const char *o = argv[i];
        double *dst;
        double lo = 0, hi = 1e9;
        if (i + 1 >= argc) return usage("an option lacks its value");
        if (strcmp(o, "--host") == 0) {
            host = argv[i + 1];
            continue;
        }
        if (strcmp(o, "--connections") == 0) dst = &conns_d, lo = 1, hi = 100000;
        else if (strcmp(o, "--window") == 0) dst = &window_d, lo = 1, hi = 1 << 20;
        else if (strcmp(o, "--size") == 0) dst = &size_d, hi = 65535 * 256.0;
        else if (strcmp(o, "--warmup") == 0) dst = &warmup, hi = 86400;
        else if (strcmp(o, "--duration") == 0) dst = &duration, lo = 1e-3, hi = 86400;
        else if (strcmp(o, "--server-pid") == 0) dst = &pid_d, lo = 1, hi = 1 << 30;
        else if (strcmp(o, "--cpu") == 0) dst = &cpu_d, hi = CPU_SETSIZE - 1;
        else if (strcmp(o, "--stall-timeout") == 0) dst = &stall, lo = 0.01, hi = 86400;
        else return usage("unknown option");
        if (parse_num(argv[i + 1], lo, hi, dst) < 0) return usage("an option's value is out of range");
    }
    nconns = (int)conns_d;
    window = (uint32_t)window_d;
    body_len = (size_t)size_d;
    server_pid = (long)pid_d;
    if (kind == K_AMP && body_len > 65535) return usage("AMP values are at most 65535 bytes");
    signal(SIGPIPE, SIG_IGN);

    if (cpu_d >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET((int)cpu_d, &set);
        if (sched_setaffinity(0, sizeof set, &set) == 0) pinned = 1;
        else fprintf(stderr, "loadgen: could not pin to CPU %d: %s\n", (int)cpu_d, strerror(errno));
    }

    /* The requests and answers, byte for byte those of _loadgen.py. */
    body = xrealloc(NULL, body_len + 1);
    memset(body, 'x', body_len);
    tmpl = xrealloc(NULL, body_len + 64);
    expect = xrealloc(NULL, body_len + 64);
    switch (kind) {
    case K_BINARY: /* header (id patched per request), u16 4, "echo", body */
        put_u32(tmpl, (uint32_t)(6 + body_len));
        tmpl[4] = 0x2;
        tmpl[5] = 0;
        put_u32(tmpl + 6, 0);
        memcpy(tmpl + 10, "\0\4echo", 6);
        memcpy(tmpl + 16, body, body_len);
        tmpl_len = 16 + body_len;
        break;
    case K_AMP: /* what follows the _ask key and value */
        memcpy(tmpl, "\0\x08_command\0\x04" "Echo\0\x04" "body", 22);
        put_u16(tmpl + 22, (uint32_t)body_len);
        memcpy(tmpl + 24, body, body_len);
        memcpy(tmpl + 24 + body_len, "\0\0", 2);
        tmpl_len = 26 + body_len;
        break;
    case K_CEILING:
        put_u32(tmpl, (uint32_t)body_len);
        memcpy(tmpl + 4, body, body_len);
        tmpl_len = 4 + body_len;
        memcpy(expect, tmpl, tmpl_len);
        expect_len = tmpl_len;
        break;
    case K_LINE:
        memcpy(tmpl, "echo ", 5);
        memcpy(tmpl + 5, body, body_len);
        tmpl[5 + body_len] = '\n';
        tmpl_len = 6 + body_len;
        memcpy(expect, "OK ", 3);
        memcpy(expect + 3, body, body_len);
        memcpy(expect + 3 + body_len, "\r\n", 2);
        expect_len = 5 + body_len;
        break;
    }

    conns = calloc((size_t)nconns, sizeof *conns);
    ep = epoll_create1(0);
    if (conns == NULL || ep < 0) {
        fail("setting up: %s", strerror(errno));
        goto report;
    }
    for (i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        struct epoll_event ev;
        uint32_t ring = 1;
        while (ring < window * 2) ring <<= 1;
        c->fd = -1;
        c->mask = ring - 1;
        c->slot_t = calloc(ring, sizeof *c->slot_t);
        c->slot_id = calloc(ring, sizeof *c->slot_id);
        c->next_id = 1;
        if (c->slot_t == NULL || c->slot_id == NULL) {
            fail("out of memory");
            goto report;
        }
        c->fd = connect_to(host, port, stall);
        if (c->fd < 0) goto report;
        if (kind == K_BINARY && handshake(c) < 0) goto report;
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
            fail("epoll_ctl: %s", strerror(errno));
            goto report;
        }
    }

    start = now_ns();
    measure_at = start + (uint64_t)(warmup * 1e9);
    end_at = measure_at + (uint64_t)(duration * 1e9);
    last_progress = start;
    for (i = 0; i < nconns; i++)
        if (queue_requests(&conns[i], window, now_ns()) < 0 || flush(ep, &conns[i]) < 0)
            goto report;
    for (;;) {
        int n = epoll_wait(ep, evs, 256, 50), j;
        uint64_t t = now_ns();
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("epoll_wait: %s", strerror(errno));
            goto report;
        }
        if (!measuring && t >= measure_at) {
            measuring = 1;
            win_start = t;
            cpu0 = self_cpu(&u0, &s0);
            busy0 = machine_busy();
            if (server_pid) srv0 = proc_cpu(server_pid);
        }
        if (t >= end_at) break;
        if (n == 0) {
            if ((double)(t - last_progress) / 1e9 > stall) {
                fail("no answer for %g s", stall);
                goto report;
            }
            continue;
        }
        for (j = 0; j < n; j++) {
            struct conn *c = evs[j].data.ptr;
            ssize_t r;
            size_t used = 0;
            int done;
            if ((evs[j].events & EPOLLOUT) && flush(ep, c) < 0) goto report;
            if (!(evs[j].events & (EPOLLIN | EPOLLHUP | EPOLLERR))) continue;
            in_reserve(c, RECV_SIZE);
            r = recv(c->fd, c->in + c->in_len, RECV_SIZE, 0);
            if (r < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
                fail("recv: %s", strerror(errno));
                goto report;
            }
            if (r == 0) {
                fail("the server closed a connection");
                goto report;
            }
            c->in_len += (size_t)r;
            t = now_ns();
            switch (kind) {
            case K_BINARY: done = feed_binary(c, t, &used); break;
            case K_AMP: done = feed_amp(c, t, &used); break;
            case K_CEILING: done = feed_ceiling(c, t, &used); break;
            default: done = feed_line(c, t, &used); break;
            }
            if (done < 0) goto report;
            if (used) {
                memmove(c->in, c->in + used, c->in_len - used);
                c->in_len -= used;
            }
            if (done > 0) {
                last_progress = t;
                if (measuring) completed += (uint64_t)done;
                if (queue_requests(c, (uint32_t)done, now_ns()) < 0) goto report;
            }
            if (c->out_len > c->out_off && !c->want_write && flush(ep, c) < 0) goto report;
        }
    }

report:
    win_end = now_ns();
    cpu1 = self_cpu(&u1, &s1);
    busy1 = machine_busy();
    srv1 = server_pid ? proc_cpu(server_pid) : -1;
    if (fatal_msg[0]) rc = 2;
    if (!measuring) {
        win_start = win_end;
        cpu0 = cpu1, u0 = u1, s0 = s1, busy0 = busy1, srv0 = srv1;
    }
    {
        double secs = (double)(win_end - win_start) / 1e9;
        double gen = cpu1 - cpu0;
        double srv = (srv0 >= 0 && srv1 >= 0) ? srv1 - srv0 : -1;
        double busy = (busy0 >= 0 && busy1 >= 0) ? busy1 - busy0 : -1;
        double other = busy >= 0 ? busy - gen - (srv >= 0 ? srv : 0) : -1;
        if (busy >= 0 && other < 0) other = 0;
        printf("{\"generator\": \"c\", \"kind\": \"%s\", \"connections\": %d, \"window\": %u, "
               "\"body_size\": %zu, \"pinned_cpu\": %d",
               kind_names[kind], nconns, window, body_len, pinned ? (int)cpu_d : -1);
        printf(", \"requests\": %llu, \"errors\": %llu", (unsigned long long)completed,
               (unsigned long long)errors);
        json_num("seconds", secs);
        json_num("rps", secs > 0 ? (double)completed / secs : 0);
        json_num("p50_ms", percentile_ms(0.50));
        json_num("p90_ms", percentile_ms(0.90));
        json_num("p99_ms", percentile_ms(0.99));
        json_num("p999_ms", percentile_ms(0.999));
        json_num("min_ms", lat_n ? (double)lat_min / 1e6 : -1);
        json_num("max_ms", lat_n ? (double)lat_max / 1e6 : -1);
        json_num("gen_cpu_s", gen);
        json_num("gen_user_s", u1 - u0);
        json_num("gen_sys_s", s1 - s0);
        json_num("gen_cpu_pct", secs > 0 ? 100.0 * gen / secs : 0);
        json_num("gen_us_per_req", completed ? 1e6 * gen / (double)completed : -1);
        json_num("server_cpu_s", srv);
        json_num("server_cpu_pct", srv >= 0 && secs > 0 ? 100.0 * srv / secs : -1);
        json_num("server_us_per_req", srv >= 0 && completed ? 1e6 * srv / (double)completed : -1);
        json_num("other_cpu_pct", other >= 0 && secs > 0 ? 100.0 * other / secs : -1);
        printf(", \"server_settings\": [");
        for (i = 0; i < settings_count; i++)
            printf("%s[%u, %u]", i ? ", " : "", settings_seen[i][0], settings_seen[i][1]);
        printf("], \"first_error\": ");
        if (first_error[0]) json_str(first_error);
        else printf("null");
        printf(", \"fatal\": ");
        if (fatal_msg[0]) json_str(fatal_msg);
        else printf("null");
        printf("}\n");
    }
    return rc;
}
