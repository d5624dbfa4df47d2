/* rtp._fanout: the per-viewer hot path in C — a fan-out table per Source track, served by
 * native worker threads (the accelerator of rtp/fanout.py).
 *
 * Objects
 *   Engine(protect, dealloc, workers, ring_slots)  one per Forwarder (or standalone Source);
 *       `protect`/`dealloc` are the addresses of libsrtp's srtp_protect / srtp_dealloc
 *       (rtp.srtp). workers > 1 starts that many threads; workers == 1 runs every command
 *       inline on the calling thread (no thread at all).
 *   Table  = Engine.table()       the fan-out table of one Source track.
 *   Viewer = Engine.viewer(ctx)   one viewer (one WebRTC session): its libsrtp outbound RTP
 *       session `ctx` (ownership passes to the Viewer: it is srtp_dealloc'ed exactly once, by
 *       the worker that owns the viewer after it was closed, or by Engine.close), its address
 *       and socket, and up to MAX_SLOTS tracks (payload type, SSRC, seq/ts offsets, counters).
 *
 * Threads and ownership
 *   Each viewer belongs to one worker (the least loaded when it was made). Everything that
 *   protects or sends for a viewer runs on that worker, in the order it was submitted: live
 *   packets of the tables it joined (Table.fan_out), its own packets (Viewer.send: GOP
 *   bursts, replays, NACK resends, RTX) and its changes (set_track, join, leave,
 *   set_address, close). So a libsrtp session is only ever used by one thread, and a
 *   viewer's packets keep their order. Each worker has a bounded ring; a live packet that
 *   finds a worker's ring full is dropped for that worker's stripe (counted per viewer in
 *   `dropped`, and per worker in Engine.stats()), a viewer packet is dropped and counted;
 *   changes never are (the caller waits for room, the GIL released). Workers protect and
 *   sendmmsg with the GIL released and never touch a Python object; the Python side only
 *   submits commands and reads counters (atomics).
 *
 * Closing
 *   Viewer.close() marks the viewer closed (seq_cst), waits until its worker is not in the
 *   middle of a send batch (at most one sendmmsg) and queues the close: after close()
 *   returns, no packet of this viewer is sent. Table.close() makes workers skip the table's
 *   queued packets. Engine.close() stops and joins every thread (the GIL released), runs the
 *   queued closes, closes every viewer still open (freeing its libsrtp session) and makes
 *   later calls harmless. Counters stay readable after close.
 *
 * The per-packet work is what rtp.fanout.fan_out_python does, counter for counter: write the
 * 12-byte RTP header (viewer PT with the producer's marker bit, seq + offset, ts + offset,
 * viewer SSRC; everything after the header kept), SRTP-protect in place (AEAD_AES_128_GCM
 * viewers: srtp_gcm.h, libcrypto's EVP keyed once, the same bytes as libsrtp; others: libsrtp's
 * srtp_protect), one sendmmsg per
 * batch of up to 64 datagrams on one socket. `packets`/`bytes` count what the kernel took,
 * `dropped` what it did not, an unusable viewer (no keys, no address), an SRTP refusal, a
 * packet too long, or a full ring.
 */
#define PY_SSIZE_T_CLEAN
#define _GNU_SOURCE
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "srtp_gcm.h"

typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);
typedef int (*srtp_dealloc_fn)(void *ctx);

#define BATCH 64
#define MAX_PACKET 1356 /* what libsrtp protects (rtp.srtp.MAX_PROTECT_SIZE) */
#define BUF_SIZE (MAX_PACKET + 160) /* room for the SRTP trailer */
#define MAX_SLOTS 4
#define MAX_WORKERS 256
#define CONTROL_HEADROOM 64 /* ring slots only changes may take */
#define TAKE 64 /* commands a worker takes out of its ring at once */
#define N_REASONS 4

#define LOAD(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define ADD(p, n) __atomic_fetch_add((p), (n), __ATOMIC_RELAXED)
/* a counter only the owning worker writes (readers load it atomically): no lock prefix */
#define BUMP(p, n) __atomic_store_n((p), __atomic_load_n((p), __ATOMIC_RELAXED) + (n), __ATOMIC_RELAXED)

typedef struct Engine Engine;
typedef struct Viewer Viewer;
typedef struct Table Table;
typedef struct Sink Sink;
typedef struct Group Group;
typedef struct Hub Hub;

typedef struct {
    int refs; /* atomic */
    int len;
    unsigned char data[];
} Pkt;

typedef struct {
    unsigned pt;
    uint32_t ssrc;
    uint32_t seq_delta;
    uint32_t ts_delta;
    Table *table; /* joined table (worker-owned), NULL when not on a fan-out */
    int index;    /* position in table->stripes[worker] */
    /* atomic; packets, bytes, retransmitted written by the owning worker only */
    uint64_t packets, bytes, dropped, retransmitted;
} Slot;

/* A stream transport (an ICE-TCP connection, RFC 4571 framing): the one writer of that
 * connection while attached. Everything here is guarded by `mu`: the owning worker (media),
 * and the Python thread (attach, detach, control frames, flush on writability). */
typedef struct {
    pthread_mutex_t mu;
    int fd;      /* atomic read without mu; -1: not attached */
    int wake_fd; /* eventfd written when the queue turns non-empty (-1: none) */
    int failed;  /* a send failed (not EAGAIN): the connection is dead */
    int notified; /* wake_fd was written and the queue has not been emptied since */
    int skipping; /* the keyframe gate: video skipped up to the next keyframe */
    unsigned char *buf; /* circular byte queue: framed bytes the kernel did not take yet */
    size_t cap, head, len, limit, low_water;
    size_t frame_left; /* bytes of the head frame still queued (0: head at a frame start) */
    /* atomic reads */
    uint64_t peak, frames, bytes_out, skips, skipped, queue_full;
} Stream;

/* The circular byte queue of a stream transport (Stream) and of an RTMP sink (Sink): both
 * have `unsigned char *buf; size_t cap, head, len; uint64_t peak`. DEFINE_BYTE_RING(T, name)
 * defines, for T:
 *   name_grow(q, need, first_cap, max): room for `need` more bytes, growing (doubling from
 *     first_cap, at most max) and linearising; 0 when impossible;
 *   name_put(q, d, n): append n bytes (room made before), tracking the peak;
 *   name_iov(q, iov): the queued bytes as 1 or 2 iovecs, oldest first (the count). */
#define DEFINE_BYTE_RING(T, name)                                                            \
    static int name##_grow(T *q, size_t need, size_t first_cap, size_t max) {                \
        if (q->len + need <= q->cap) return 1;                                               \
        if (q->len + need > max) return 0;                                                   \
        size_t cap = q->cap ? q->cap : first_cap;                                            \
        while (cap < q->len + need) cap *= 2;                                                \
        if (cap > max) cap = max;                                                            \
        unsigned char *b = malloc(cap);                                                      \
        if (b == NULL) return 0;                                                             \
        if (q->len) { /* linearise */                                                        \
            size_t first = q->cap - q->head < q->len ? q->cap - q->head : q->len;            \
            memcpy(b, q->buf + q->head, first);                                              \
            memcpy(b + first, q->buf, q->len - first);                                       \
        }                                                                                    \
        free(q->buf);                                                                        \
        q->buf = b;                                                                          \
        q->cap = cap;                                                                        \
        q->head = 0;                                                                         \
        return 1;                                                                            \
    }                                                                                        \
    static void name##_put(T *q, const unsigned char *d, size_t n) {                         \
        if (n == 0) return;                                                                  \
        size_t tail = (q->head + q->len) % q->cap;                                           \
        size_t first = q->cap - tail < n ? q->cap - tail : n;                                \
        memcpy(q->buf + tail, d, first);                                                     \
        memcpy(q->buf, d + first, n - first);                                                \
        q->len += n;                                                                         \
        if (q->len > LOAD(&q->peak))                                                         \
            __atomic_store_n(&q->peak, (uint64_t)q->len, __ATOMIC_RELAXED);                  \
    }                                                                                        \
    static int name##_iov(T *q, struct iovec iov[2]) {                                       \
        size_t first = q->cap - q->head < q->len ? q->cap - q->head : q->len;                \
        iov[0].iov_base = q->buf + q->head;                                                  \
        iov[0].iov_len = first;                                                              \
        iov[1].iov_base = q->buf;                                                            \
        iov[1].iov_len = q->len - first;                                                     \
        return first < q->len ? 2 : 1;                                                       \
    }

DEFINE_BYTE_RING(Stream, stream_ring)

struct Viewer {
    int refs; /* atomic: the Python handle + queued commands */
    int worker;
    int closed;   /* atomic: set by Viewer.close */
    int released; /* its close ran (ctx freed, slots left) */
    /* worker-owned (changed by commands) */
    int fd;
    struct sockaddr_in6 addr; /* or a sockaddr_in */
    socklen_t addrlen;
    void *ctx; /* libsrtp session, freed exactly once */
    Gcm *gcm;  /* AES-GCM without libsrtp (srtp_gcm.h) for its RTP when set; freed with ctx */
    Slot slots[MAX_SLOTS];
    uint64_t rtx_sent;            /* atomic */
    uint64_t refused[N_REASONS];  /* atomic: viewer packets SRTP refused, by reason */
    Viewer *prev, *next;          /* the engine's open viewers (GIL) */
    Stream st;                    /* the stream transport (ICE-TCP), when attached */
};

typedef struct {
    Viewer *v;
    int slot;
} Entry;

typedef struct {
    Entry *e;
    int n, cap;
    uint64_t missed; /* atomic: live packets dropped at this stripe's full ring */
} Stripe;

struct Table {
    int refs;   /* atomic */
    int closed; /* atomic */
    int nstripes;
    Stripe stripes[];
};

enum { C_LIVE, C_RAW, C_SET_TRACK, C_JOIN, C_LEAVE, C_ADDR, C_CLOSE, C_BARRIER,
       C_G_LIVE, C_S_UNIT, C_S_JOIN, C_S_LEAVE, C_S_FINISH, C_S_CLOSE };
/* commands that carry media (dropped, not run, when the engine closes) */
#define IS_MEDIA(t) ((t) == C_LIVE || (t) == C_RAW || (t) == C_G_LIVE || (t) == C_S_UNIT || \
                     (t) == C_S_FINISH)
enum { K_MEDIA, K_RETRANSMISSION, K_RTX };
enum { F_KEYFRAME = 1, F_VIDEO = 2 }; /* live packet flags (the keyframe gate) */
#define STREAM_SLACK (65535 + 2) /* room for the unsent tail of one started frame */

typedef struct Barrier {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int remaining;
} Barrier;

typedef struct {
    int type;
    int slot;
    Viewer *v;
    Table *t;
    Pkt *pkt;
    Barrier *barrier;
    Sink *s;  /* RTMP sink commands */
    Group *g; /* G_LIVE, S_JOIN */
    uint32_t a, b, c, d; /* LIVE: seq, ts, flags; SET_TRACK: pt, ssrc, sd, tsd; RAW: kind, reason */
    uint32_t e, f;       /* G_LIVE: chunk size, first-chunk length */
    int fd;
    struct sockaddr_in6 addr;
    socklen_t addrlen;
} Cmd;

typedef struct {
    Engine *eng;
    int index;
    pthread_t thread;
    int started;
    long tid; /* atomic: kernel thread id, for per-thread CPU */
    pthread_mutex_t mu;
    pthread_cond_t cv, space, idle;
    int waiters; /* atomic: Viewer.close calls waiting for the end of a send batch */
    Cmd *ring;
    unsigned cap, head, count;
    int stop;
    uint64_t batch_seq;  /* atomic: odd while a send batch is assembled/sent */
    uint64_t ring_drops; /* atomic: packets (live: per stripe, not per viewer) not queued */
    uint64_t commands;   /* atomic */
    int viewers;         /* viewers assigned (GIL) */
    /* send batch */
    unsigned char bufs[BATCH][BUF_SIZE];
    struct mmsghdr msgs[BATCH];
    struct iovec iovs[BATCH];
    Slot *owners[BATCH];
    int n, fd;
} Worker;

struct Engine {
    srtp_protect_fn protect;
    srtp_dealloc_fn dealloc;
    int nworkers;
    int threaded;
    int closed;
    Worker *workers;
    Viewer *open; /* list of open viewers (GIL) */
    Sink *sinks;  /* list of open sinks (GIL) */
};

/* -- reference counting (plain memory: any thread may free) ----------------------------- */

static void pkt_unref(Pkt *p) {
    if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0) free(p);
}

static void table_unref(Table *t) {
    if (t && __atomic_sub_fetch(&t->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        for (int i = 0; i < t->nstripes; i++) free(t->stripes[i].e);
        free(t);
    }
}

static void viewer_unref(Viewer *v) {
    if (v && __atomic_sub_fetch(&v->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_destroy(&v->st.mu);
        free(v->st.buf);
        free(v);
    }
}

static void sink_unref(Sink *s);
static void group_unref(Group *g);

static void cmd_release(Cmd *c) {
    pkt_unref(c->pkt);
    table_unref(c->t);
    viewer_unref(c->v);
    sink_unref(c->s);
    group_unref(c->g);
}

/* -- the worker's side (no Python, no GIL) ----------------------------------------------- */

static void flush(Worker *w) {
    int off = 0, n = w->n;
    while (off < n) {
        int sent = sendmmsg(w->fd, w->msgs + off, (unsigned int)(n - off), 0);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                for (; off < n; off++) ADD(&w->owners[off]->dropped, 1);
                break;
            }
            ADD(&w->owners[off]->dropped, 1); /* this destination failed; the others may not */
            off++;
            continue;
        }
        for (int i = off; i < off + sent; i++) {
            BUMP(&w->owners[i]->packets, 1);
            BUMP(&w->owners[i]->bytes, (uint64_t)w->msgs[i].msg_len);
        }
        off += sent;
    }
    w->n = 0;
}

static void batch_begin(Worker *w) { __atomic_add_fetch(&w->batch_seq, 1, __ATOMIC_SEQ_CST); }
static void batch_end(Worker *w) {
    __atomic_add_fetch(&w->batch_seq, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&w->waiters, __ATOMIC_SEQ_CST)) { /* a close waits for this batch */
        pthread_mutex_lock(&w->mu);
        pthread_cond_broadcast(&w->idle);
        pthread_mutex_unlock(&w->mu);
    }
}

/* queue `len` bytes already in w->bufs[w->n] for viewer v / slot s */
static void queue_out(Worker *w, Viewer *v, Slot *s, int len) {
    int n = w->n;
    w->iovs[n].iov_base = w->bufs[n];
    w->iovs[n].iov_len = (size_t)len;
    memset(&w->msgs[n], 0, sizeof(w->msgs[n]));
    w->msgs[n].msg_hdr.msg_name = &v->addr;
    w->msgs[n].msg_hdr.msg_namelen = v->addrlen;
    w->msgs[n].msg_hdr.msg_iov = &w->iovs[n];
    w->msgs[n].msg_hdr.msg_iovlen = 1;
    w->owners[n] = s;
    w->n = n + 1;
    if (w->n == BATCH) {
        flush(w);
        batch_end(w); /* a close waits at most for one sendmmsg */
        batch_begin(w);
    }
}


static int closed(Viewer *v) { return __atomic_load_n(&v->closed, __ATOMIC_SEQ_CST); }

/* -- the stream transport (ICE-TCP): RFC 4571 frames on a non-blocking socket ------------ */

/* forget the first n queued bytes (written), following the frame boundaries */
static void stream_consume(Stream *q, size_t n) {
    while (n > 0 && q->len > 0) {
        if (q->frame_left == 0) /* a whole frame starts here: its length */
            q->frame_left = 2 + ((size_t)q->buf[q->head] << 8 | q->buf[(q->head + 1) % q->cap]);
        size_t take = n < q->frame_left ? n : q->frame_left;
        if (take > q->len) take = q->len;
        q->head = (q->head + take) % q->cap;
        q->len -= take;
        q->frame_left -= take;
        n -= take;
    }
    if (q->len == 0) q->head = q->frame_left = 0;
}

/* make room for `need` more bytes (growing up to limit + STREAM_SLACK); 0 when impossible */
static int stream_room(Stream *q, size_t need) {
    return stream_ring_grow(q, need, 16384, q->limit + STREAM_SLACK);
}

static void stream_append(Stream *q, const unsigned char *d, size_t n) { stream_ring_put(q, d, n); }

/* tell Python (its writer task waits on wake_fd) that the queue needs the socket's
 * writability, or that the connection failed; once until the queue was emptied */
static void stream_wake(Stream *q) {
    if ((q->len > 0 || q->failed) && !q->notified && q->wake_fd >= 0) {
        q->notified = 1;
        uint64_t one = 1;
        ssize_t r = write(q->wake_fd, &one, sizeof(one));
        (void)r; /* EAGAIN: the counter is already non-zero, the reader wakes anyway */
    }
}

static void stream_fail(Stream *q) {
    q->failed = 1;
    stream_wake(q);
}

/* write what the kernel takes of the queue (never blocks) */
static void stream_flush_locked(Stream *q) {
    while (q->len > 0 && !q->failed) {
        struct iovec iov[2];
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)stream_ring_iov(q, iov);
        ssize_t r = sendmsg(q->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) stream_fail(q);
            break;
        }
        ADD(&q->bytes_out, (uint64_t)r);
        stream_consume(q, (size_t)r);
    }
    if (q->len == 0 && !q->failed) q->notified = 0;
    if (q->len == 0 && q->cap > 65536) { /* a congestion is over: give the memory back */
        free(q->buf);
        q->buf = NULL;
        q->cap = q->head = 0;
    }
}

static void stream_overflowed(Stream *q) {
    if (!q->skipping) {
        q->skipping = 1;
        ADD(&q->skips, 1);
    }
}

/* the keyframe gate (rtp.tcp_framing.KeyframeGate): may this media packet go out now? */
static int stream_admit_locked(Stream *q, int video, int keyframe) {
    if (!q->skipping) return 1;
    if (q->len <= q->low_water) {
        if (video && keyframe) {
            q->skipping = 0;
            return 1;
        }
        if (!video) return 1;
    }
    ADD(&q->skipped, 1);
    return 0;
}

/* one frame: straight to the kernel when nothing waits, else queued. 1 taken (sent or
 * queued), 0 refused: queue full (the gate then skips; counted) or a dead connection. The
 * unsent tail of a frame the kernel took part of is always queued: the stream stays framed. */
static int stream_frame_locked(Stream *q, const unsigned char *pkt, size_t n) {
    if (q->fd < 0 || q->failed || n == 0 || n > 65535) return 0;
    unsigned char hdr[2] = {(unsigned char)(n >> 8), (unsigned char)(n & 0xFF)};
    size_t total = n + 2;
    if (q->len > 0) stream_flush_locked(q);
    if (q->failed) return 0;
    if (q->len == 0) {
        struct iovec iov[2] = {{hdr, 2}, {(void *)pkt, n}};
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        ssize_t r;
        do {
            r = sendmsg(q->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                stream_fail(q);
                return 0;
            }
            r = 0;
        }
        ADD(&q->frames, 1);
        ADD(&q->bytes_out, (uint64_t)r);
        if ((size_t)r < total) {
            if (!stream_room(q, total - (size_t)r)) { /* out of memory: the stream is lost */
                stream_fail(q);
                return 1;
            }
            q->frame_left = total - (size_t)r; /* the queue starts inside this frame */
            if (r < 2) {
                stream_append(q, hdr + r, (size_t)(2 - r));
                stream_append(q, pkt, n);
            } else {
                stream_append(q, pkt + (r - 2), total - (size_t)r);
            }
            stream_wake(q);
        }
        return 1;
    }
    if (q->len + total > q->limit || !stream_room(q, total)) {
        ADD(&q->queue_full, 1);
        stream_overflowed(q);
        stream_wake(q);
        return 0;
    }
    stream_append(q, hdr, 2);
    stream_append(q, pkt, n);
    ADD(&q->frames, 1);
    stream_wake(q);
    return 1;
}

static int attached(Viewer *v) { return __atomic_load_n(&v->st.fd, __ATOMIC_ACQUIRE) >= 0; }

/* the 12-byte header of a live packet for slot s, then the payload, into b */
static void build_live(unsigned char *b, const unsigned char *src, int size, const Slot *s,
                       uint32_t seq, uint32_t ts) {
    uint16_t s16 = (uint16_t)((seq + s->seq_delta) & 0xFFFF);
    uint32_t t32 = ts + s->ts_delta;
    uint32_t ss = s->ssrc;
    b[0] = src[0];
    b[1] = (unsigned char)((src[1] & 0x80) | (s->pt & 0x7F));
    b[2] = s16 >> 8;
    b[3] = s16 & 0xFF;
    b[4] = t32 >> 24;
    b[5] = (t32 >> 16) & 0xFF;
    b[6] = (t32 >> 8) & 0xFF;
    b[7] = t32 & 0xFF;
    b[8] = ss >> 24;
    b[9] = (ss >> 16) & 0xFF;
    b[10] = (ss >> 8) & 0xFF;
    b[11] = ss & 0xFF;
    memcpy(b + 12, src + 12, (size_t)(size - 12));
}

/* SRTP-protect a viewer's RTP packet in place: its GCM context, else its libsrtp session */
static int protect_rtp(Engine *e, Viewer *v, unsigned char *b, int *len) {
    if (v->gcm != NULL) return gcm_protect(v->gcm, b, len);
    return e->protect(v->ctx, b, len);
}

/* a live packet to a viewer on a stream: gate, protect, frame, write (scratch: b) */
static void stream_live(Worker *w, Viewer *v, Slot *s, unsigned char *b, const unsigned char *src,
                        int size, uint32_t seq, uint32_t ts, unsigned flags) {
    Stream *q = &v->st;
    pthread_mutex_lock(&q->mu);
    if (q->fd < 0 || q->failed) {
        pthread_mutex_unlock(&q->mu);
        ADD(&s->dropped, 1);
        return;
    }
    if (q->len > 0) stream_flush_locked(q);
    if (!stream_admit_locked(q, (flags & F_VIDEO) != 0, (flags & F_KEYFRAME) != 0)) {
        pthread_mutex_unlock(&q->mu);
        ADD(&s->dropped, 1); /* a congested viewer: skipping to the next keyframe */
        return;
    }
    build_live(b, src, size, s, seq, ts);
    int len = size;
    if (protect_rtp(w->eng, v, b, &len) != 0) {
        pthread_mutex_unlock(&q->mu);
        ADD(&s->dropped, 1);
        return;
    }
    int ok = stream_frame_locked(q, b, (size_t)len);
    pthread_mutex_unlock(&q->mu);
    if (!ok) {
        ADD(&s->dropped, 1);
        return;
    }
    BUMP(&s->packets, 1);
    BUMP(&s->bytes, (uint64_t)len);
}

static void run_live(Worker *w, Table *t, Pkt *p, uint32_t seq, uint32_t ts, unsigned flags) {
    if (__atomic_load_n(&t->closed, __ATOMIC_ACQUIRE)) return;
    Stripe *st = &t->stripes[w->index];
    uint64_t missed = __atomic_exchange_n(&st->missed, 0, __ATOMIC_RELAXED);
    if (st->n == 0) return;
    const unsigned char *src = p->data;
    int size = p->len;
    srtp_protect_fn protect = w->eng->protect;
    batch_begin(w);
    w->n = 0;
    for (int i = 0; i < st->n; i++) {
        Viewer *v = st->e[i].v;
        Slot *s = &v->slots[st->e[i].slot];
        if (missed) ADD(&s->dropped, missed);
        if (closed(v)) continue;
        if (v->ctx == NULL || protect == NULL || size < 12 || size > MAX_PACKET) {
            ADD(&s->dropped, 1);
            continue;
        }
        if (attached(v)) { /* ICE-TCP: framed on its connection, at once (scratch buffer) */
            stream_live(w, v, s, w->bufs[w->n], src, size, seq, ts, flags);
            continue;
        }
        if (v->fd < 0 || v->addrlen == 0) {
            ADD(&s->dropped, 1);
            continue;
        }
        if (w->n > 0 && v->fd != w->fd) flush(w); /* another socket: send what is queued */
        w->fd = v->fd;
        unsigned char *b = w->bufs[w->n];
        build_live(b, src, size, s, seq, ts);
        int len = size;
        if (protect_rtp(w->eng, v, b, &len) != 0) {
            ADD(&s->dropped, 1);
            continue;
        }
        queue_out(w, v, s, len);
    }
    if (w->n > 0) flush(w);
    batch_end(w);
}

static void run_raw(Worker *w, Viewer *v, int slot, Pkt *p, unsigned kind, unsigned reason) {
    if (closed(v)) return;
    Slot *s = &v->slots[slot];
    int stream = attached(v);
    if (v->ctx == NULL || (!stream && (v->fd < 0 || v->addrlen == 0)) ||
        w->eng->protect == NULL) {
        ADD(&s->dropped, 1);
        return;
    }
    if (p->len > MAX_PACKET || p->len < 12) {
        ADD(&v->refused[reason % N_REASONS], 1);
        return;
    }
    batch_begin(w);
    unsigned char *b = w->bufs[0];
    memcpy(b, p->data, (size_t)p->len);
    int len = p->len;
    if (protect_rtp(w->eng, v, b, &len) != 0) {
        ADD(&v->refused[reason % N_REASONS], 1);
        batch_end(w);
        return;
    }
    int ok;
    if (stream) {
        pthread_mutex_lock(&v->st.mu);
        ok = stream_frame_locked(&v->st, b, (size_t)len);
        pthread_mutex_unlock(&v->st.mu);
    } else {
        ssize_t rc;
        do {
            rc = sendto(v->fd, b, (size_t)len, 0, (struct sockaddr *)&v->addr, v->addrlen);
        } while (rc < 0 && errno == EINTR);
        ok = rc >= 0;
    }
    batch_end(w);
    if (!ok) {
        ADD(&s->dropped, 1);
        return;
    }
    if (kind == K_MEDIA) {
        BUMP(&s->packets, 1);
        BUMP(&s->bytes, (uint64_t)len);
    } else {
        BUMP(&s->retransmitted, 1);
        if (kind == K_RTX) BUMP(&v->rtx_sent, 1);
    }
}

static void leave(Viewer *v, int slot) {
    Slot *s = &v->slots[slot];
    Table *t = s->table;
    if (t == NULL) return;
    Stripe *st = &t->stripes[v->worker < t->nstripes ? v->worker : 0];
    int i = s->index;
    if (i >= 0 && i < st->n && st->e[i].v == v && st->e[i].slot == slot) {
        st->e[i] = st->e[st->n - 1];
        st->n--;
        if (i < st->n) st->e[i].v->slots[st->e[i].slot].index = i;
    }
    s->table = NULL;
    s->index = -1;
    table_unref(t);
    viewer_unref(v); /* the stripe's reference */
}

static void join(Viewer *v, int slot, Table *t) {
    Slot *s = &v->slots[slot];
    if (s->table == t) return;
    if (s->table != NULL) leave(v, slot);
    Stripe *st = &t->stripes[v->worker < t->nstripes ? v->worker : 0];
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 16;
        Entry *e = realloc(st->e, sizeof(Entry) * (size_t)cap);
        if (e == NULL) { /* out of memory: the viewer stays off this fan-out */
            ADD(&s->dropped, 1);
            return;
        }
        st->e = e;
        st->cap = cap;
    }
    st->e[st->n].v = v;
    st->e[st->n].slot = slot;
    s->index = st->n++;
    s->table = t;
    __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
}

/* the end of a viewer: off every table, its libsrtp session freed (exactly once) */
static void release(Engine *e, Viewer *v) {
    if (v->released) return;
    v->released = 1;
    for (int i = 0; i < MAX_SLOTS; i++) leave(v, i);
    if (v->ctx != NULL) {
        if (e->dealloc != NULL) e->dealloc(v->ctx);
        v->ctx = NULL;
    }
    gcm_free(v->gcm);
    v->gcm = NULL;
}

/* -- RTMP sinks: byte streams of whole messages (the RTMP relay's players) ----------------
 *
 * A Sink is one playing connection's socket (plain TCP) with a byte-bounded queue in C. It
 * belongs to one worker, like a viewer: everything written to it runs there, in submission
 * order — live messages of the Group it joined (Group.send: the shared body once per
 * message, the per-player chunk header built here from the player's stream id and
 * timestamp base), its own units (Sink.unit: the join burst and control messages, built in
 * Python) and its changes. Partial writes keep the unsent rest of a message queued (message
 * boundaries are tracked, so an overflow never cuts one in half). The slow-player policy is
 * relay.ReaderQueue's: a message that would take the queue past `limit` empties it (the
 * rest of a message already started on the wire stays) and skips to the next keyframe; the
 * overflow after `max_skips` skips drops the player. Control units are never skipped; more
 * than 2 * limit of them drops the player. What Python must act on — the queue turned
 * non-empty (wait for writability, then Sink.poll), a skip, a drop, a failed socket, the
 * end of a finished stream — is reported through the Hub: its token is queued and the
 * Hub's eventfd written, once until Python polls. */

struct Hub {
    int refs; /* atomic: the Python handle + every sink */
    int efd;
    pthread_mutex_t mu;
    uint64_t *tokens;
    size_t n, cap;
    int armed; /* the eventfd was written and take() did not run since */
};

struct Sink {
    int refs; /* atomic: the Python handle + queued commands + a group stripe */
    int worker;
    int closed;   /* atomic: set by Sink.close */
    int released; /* its close ran */
    Hub *hub;
    uint64_t token;
    int fd; /* the connection's socket (not owned) */
    /* worker-owned */
    uint32_t stream_id, base;
    Group *group;
    int index;
    /* guarded by mu (the worker and the Python thread) */
    pthread_mutex_t mu;
    int failed, dropped, finishing, finished, notified, waiting_key;
    unsigned char *buf;
    size_t cap, head, len;
    size_t *lens; /* lengths of the queued messages, oldest first (a ring) */
    size_t lcap, lhead, lcount;
    size_t head_done; /* bytes of the oldest queued message already written */
    size_t limit;
    unsigned max_skips, skips;
    /* atomic reads */
    uint64_t bytes_out, messages, skipped, peak, ring_missed;
    Sink *prev, *next; /* the engine's open sinks (GIL) */
};

DEFINE_BYTE_RING(Sink, sink_ring)

typedef struct {
    Sink **e;
    int n, cap;
    uint64_t missed; /* atomic: live messages dropped at this stripe's full ring */
} SinkStripe;

struct Group {
    int refs;
    int closed;
    int nstripes;
    SinkStripe stripes[];
};

static int sink_closed(Sink *s) { return __atomic_load_n(&s->closed, __ATOMIC_SEQ_CST); }

static void hub_unref(Hub *h) {
    if (h && __atomic_sub_fetch(&h->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (h->efd >= 0) close(h->efd);
        pthread_mutex_destroy(&h->mu);
        free(h->tokens);
        free(h);
    }
}

static void hub_push(Hub *h, uint64_t token) {
    pthread_mutex_lock(&h->mu);
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        uint64_t *t = realloc(h->tokens, cap * sizeof(uint64_t));
        if (t != NULL) {
            h->tokens = t;
            h->cap = cap;
        }
    }
    if (h->n < h->cap) h->tokens[h->n++] = token;
    if (!h->armed && h->efd >= 0) {
        h->armed = 1;
        uint64_t one = 1;
        ssize_t r = write(h->efd, &one, sizeof(one));
        (void)r;
    }
    pthread_mutex_unlock(&h->mu);
}

static void sink_unref(Sink *s) {
    if (s && __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        pthread_mutex_destroy(&s->mu);
        free(s->buf);
        free(s->lens);
        hub_unref(s->hub);
        free(s);
    }
}

static void group_unref(Group *g) {
    if (g && __atomic_sub_fetch(&g->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        for (int i = 0; i < g->nstripes; i++) free(g->stripes[i].e);
        free(g);
    }
}

/* tell Python (mu held); `force`: a state change it must see even while it is notified */
static void sink_notify(Sink *s, int force) {
    if (s->notified && !force) return;
    s->notified = 1;
    hub_push(s->hub, s->token);
}

/* forget the first n queued bytes (written), following the message boundaries */
static void sink_consume(Sink *s, size_t n) {
    s->head = s->len > n ? (s->head + n) % s->cap : 0;
    s->len = s->len > n ? s->len - n : 0;
    while (n > 0 && s->lcount > 0) {
        size_t left = s->lens[s->lhead] - s->head_done;
        if (n < left) {
            s->head_done += n;
            return;
        }
        n -= left;
        s->head_done = 0;
        s->lhead = (s->lhead + 1) % s->lcap;
        s->lcount--;
    }
}

/* room for `need` more bytes and one more message length; 0 when impossible */
static int sink_room(Sink *s, size_t need) {
    if (s->lcount == s->lcap) {
        size_t lcap = s->lcap ? s->lcap * 2 : 64;
        size_t *l = malloc(lcap * sizeof(size_t));
        if (l == NULL) return 0;
        for (size_t i = 0; i < s->lcount; i++) l[i] = s->lens[(s->lhead + i) % s->lcap];
        free(s->lens);
        s->lens = l;
        s->lcap = lcap;
        s->lhead = 0;
    }
    return sink_ring_grow(s, need, 65536, SIZE_MAX / 2);
}

static void sink_put(Sink *s, const unsigned char *d, size_t n) { sink_ring_put(s, d, n); }

/* the queue after an overflow: only the rest of a message already started on the wire */
static void sink_clear(Sink *s) {
    if (s->lcount > 0 && s->head_done > 0) {
        s->len = s->lens[s->lhead] - s->head_done;
        s->lcount = 1;
    } else {
        s->len = s->head = s->lcount = s->head_done = 0;
    }
}

static void sink_fail(Sink *s) {
    s->failed = 1;
    sink_notify(s, 1);
}

static void sink_maybe_finished(Sink *s) {
    if (s->finishing && s->len == 0 && !s->finished) {
        s->finished = 1;
        sink_notify(s, 1);
    }
}

/* write what the kernel takes of the queue (never blocks; mu held) */
static void sink_flush_locked(Sink *s) {
    while (s->len > 0 && !s->failed) {
        struct iovec iov[2];
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)sink_ring_iov(s, iov);
        ssize_t r = sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) sink_fail(s);
            break;
        }
        ADD(&s->bytes_out, (uint64_t)r);
        sink_consume(s, (size_t)r);
    }
    if (s->len == 0) {
        s->head = 0;
        if (s->cap > 262144) { /* a congestion is over: give the memory back */
            free(s->buf);
            s->buf = NULL;
            s->cap = 0;
        }
        sink_maybe_finished(s);
    }
}

/* the dropped player: nothing is written any more (its connection is ended by Python) */
static void sink_drop(Sink *s) {
    s->dropped = 1;
    s->len = s->head = s->lcount = s->head_done = 0;
    sink_notify(s, 1);
}

/* one message (iov pieces, `size` bytes in all) for sink s: the policy, then straight to
 * the kernel when nothing waits, else queued (mu held) */
static void sink_offer_locked(Sink *s, struct iovec *iov, int n, size_t size, int keyframe,
                              int control) {
    if (s->dropped || s->failed || s->fd < 0) return;
    if (s->len > 0) sink_flush_locked(s);
    if (s->failed) return;
    if (!control) {
        if (s->waiting_key) {
            if (!keyframe) {
                ADD(&s->skipped, 1);
                return;
            }
            s->waiting_key = 0;
        }
        if (s->len + size > s->limit) {
            if (s->skips >= s->max_skips) {
                s->skips++;
                sink_drop(s);
                return;
            }
            sink_clear(s);
            s->skips++;
            sink_notify(s, 1);
            if (!keyframe) {
                s->waiting_key = 1;
                ADD(&s->skipped, 1);
                return;
            }
        }
    } else if (s->len + size > 2 * s->limit) {
        sink_drop(s);
        return;
    }
    ADD(&s->messages, 1);
    size_t done = 0;
    if (s->len == 0) {
        struct msghdr m;
        memset(&m, 0, sizeof(m));
        m.msg_iov = iov;
        m.msg_iovlen = (size_t)n;
        ssize_t r;
        do {
            r = sendmsg(s->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
        } while (r < 0 && errno == EINTR);
        if (r < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                sink_fail(s);
                return;
            }
            r = 0;
        }
        ADD(&s->bytes_out, (uint64_t)r);
        done = (size_t)r;
        if (done == size) return;
    }
    if (!sink_room(s, size - done)) { /* out of memory: the stream is lost */
        sink_fail(s);
        return;
    }
    size_t skip = done;
    for (int i = 0; i < n; i++) {
        size_t l = iov[i].iov_len;
        if (skip >= l) {
            skip -= l;
            continue;
        }
        sink_put(s, (unsigned char *)iov[i].iov_base + skip, l - skip);
        skip = 0;
    }
    if (s->lcount == 0) s->head_done = done;
    s->lens[(s->lhead + s->lcount) % s->lcap] = size;
    s->lcount++;
    sink_notify(s, 0);
}

/* the RTMP chunk basic header + format-0 message header (+ extended timestamp) */
static size_t rtmp_header(unsigned char *h, unsigned type_id, unsigned csid, uint32_t ts,
                          uint32_t length, uint32_t stream_id) {
    int ext = ts >= 0xFFFFFF;
    uint32_t t = ext ? 0xFFFFFF : ts;
    h[0] = (unsigned char)(csid & 0x3F);
    h[1] = t >> 16;
    h[2] = (t >> 8) & 0xFF;
    h[3] = t & 0xFF;
    h[4] = length >> 16;
    h[5] = (length >> 8) & 0xFF;
    h[6] = length & 0xFF;
    h[7] = (unsigned char)type_id;
    h[8] = stream_id & 0xFF;
    h[9] = (stream_id >> 8) & 0xFF;
    h[10] = (stream_id >> 16) & 0xFF;
    h[11] = stream_id >> 24;
    if (!ext) return 12;
    h[12] = ts >> 24;
    h[13] = (ts >> 16) & 0xFF;
    h[14] = (ts >> 8) & 0xFF;
    h[15] = ts & 0xFF;
    return 16;
}

/* a player's timestamp: relative to its base, earlier than the base clamps to 0
 * (trio_core.rtmp.registry.Player.rebase) */
static uint32_t rebase(uint32_t ts, uint32_t base) {
    uint32_t d = ts - base;
    return d >= 0x80000000u ? 0 : d;
}

/* one live message to every sink of this worker's stripe. The Pkt holds the first chunk's
 * data then the shared continuation (format-3 chunks, 1-byte basic headers, no extended
 * timestamp); a player whose timestamp needs one (>= 2^24-1 ms) gets the message re-chunked
 * here. a = timestamp, b = type | csid << 8 | keyframe << 16, d = message length,
 * e = chunk size, f = first chunk length */
static void run_group_live(Worker *w, Group *g, Cmd *c) {
    if (__atomic_load_n(&g->closed, __ATOMIC_ACQUIRE)) return;
    SinkStripe *st = &g->stripes[w->index];
    uint64_t missed = __atomic_exchange_n(&st->missed, 0, __ATOMIC_RELAXED);
    Pkt *p = c->pkt;
    unsigned type_id = c->b & 0xFF, csid = (c->b >> 8) & 0xFF;
    int keyframe = (c->b >> 16) & 1;
    uint32_t length = c->d, chunk = c->e, first = c->f;
    for (int i = 0; i < st->n; i++) {
        Sink *s = st->e[i];
        batch_begin(w);
        if (sink_closed(s)) {
            batch_end(w);
            continue;
        }
        pthread_mutex_lock(&s->mu);
        if (missed && !s->dropped) { /* a message it never got: resume at a keyframe */
            ADD(&s->ring_missed, missed);
            if (!s->waiting_key) {
                s->waiting_key = 1;
                s->skips++;
                sink_notify(s, 1);
            }
        }
        uint32_t ts = rebase(c->a, s->base);
        unsigned char h[16];
        size_t hl = rtmp_header(h, type_id, csid, ts, length, s->stream_id);
        if (ts < 0xFFFFFF) {
            struct iovec iov[2] = {{h, hl}, {p->data, (size_t)p->len}};
            sink_offer_locked(s, iov, 2, hl + (size_t)p->len, keyframe, 0);
        } else { /* extended timestamps in every continuation header: re-chunk */
            size_t chunks = length > first && chunk ? (length - first + chunk - 1) / chunk : 0;
            size_t total = hl + length + chunks * 5;
            unsigned char *m = malloc(total);
            if (m == NULL) {
                sink_fail(s);
            } else {
                size_t o = 0, in = first;
                memcpy(m, h, hl);
                o += hl;
                memcpy(m + o, p->data, first);
                o += first;
                for (size_t k = 0; k < chunks; k++) {
                    size_t take = length - first - k * chunk < chunk ? length - first - k * chunk
                                                                     : chunk;
                    m[o++] = (unsigned char)(0xC0 | (csid & 0x3F));
                    m[o++] = ts >> 24;
                    m[o++] = (ts >> 16) & 0xFF;
                    m[o++] = (ts >> 8) & 0xFF;
                    m[o++] = ts & 0xFF;
                    in += 1; /* the shared continuation's own basic header */
                    memcpy(m + o, p->data + in, take);
                    o += take;
                    in += take;
                }
                struct iovec iov[1] = {{m, o}};
                sink_offer_locked(s, iov, 1, o, keyframe, 0);
                free(m);
            }
        }
        pthread_mutex_unlock(&s->mu);
        batch_end(w);
    }
}

static void run_sink_unit(Worker *w, Sink *s, Pkt *p, int keyframe, int control) {
    batch_begin(w);
    if (!sink_closed(s)) {
        pthread_mutex_lock(&s->mu);
        struct iovec iov[1] = {{p->data, (size_t)p->len}};
        sink_offer_locked(s, iov, 1, (size_t)p->len, keyframe, control);
        pthread_mutex_unlock(&s->mu);
    }
    batch_end(w);
}

static void sink_leave(Sink *s) {
    Group *g = s->group;
    if (g == NULL) return;
    SinkStripe *st = &g->stripes[s->worker < g->nstripes ? s->worker : 0];
    int i = s->index;
    if (i >= 0 && i < st->n && st->e[i] == s) {
        st->e[i] = st->e[st->n - 1];
        st->n--;
        if (i < st->n) st->e[i]->index = i;
    }
    s->group = NULL;
    s->index = -1;
    group_unref(g);
    sink_unref(s); /* the stripe's reference */
}

static void sink_join(Sink *s, Group *g, uint32_t stream_id, uint32_t base) {
    s->stream_id = stream_id;
    s->base = base;
    if (s->group == g) return;
    if (s->group != NULL) sink_leave(s);
    SinkStripe *st = &g->stripes[s->worker < g->nstripes ? s->worker : 0];
    if (st->n == st->cap) {
        int cap = st->cap ? st->cap * 2 : 16;
        Sink **e = realloc(st->e, sizeof(Sink *) * (size_t)cap);
        if (e == NULL) { /* out of memory: the player gets nothing live; drop it */
            pthread_mutex_lock(&s->mu);
            sink_drop(s);
            pthread_mutex_unlock(&s->mu);
            return;
        }
        st->e = e;
        st->cap = cap;
    }
    st->e[st->n] = s;
    s->index = st->n++;
    s->group = g;
    __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
}

static void sink_release(Sink *s) {
    if (s->released) return;
    s->released = 1;
    sink_leave(s);
}

static void run_sink_finish(Sink *s) {
    pthread_mutex_lock(&s->mu);
    s->finishing = 1;
    if (s->dropped || s->failed) {
        s->finished = 1;
        sink_notify(s, 1);
    } else {
        sink_maybe_finished(s);
    }
    pthread_mutex_unlock(&s->mu);
}

static void run(Worker *w, Cmd *c) {
    switch (c->type) {
    case C_LIVE:
        run_live(w, c->t, c->pkt, c->a, c->b, c->c);
        break;
    case C_RAW:
        run_raw(w, c->v, c->slot, c->pkt, c->a, c->b);
        break;
    case C_SET_TRACK: {
        Slot *s = &c->v->slots[c->slot];
        s->pt = c->a;
        s->ssrc = c->b;
        s->seq_delta = c->c;
        s->ts_delta = c->d;
        break;
    }
    case C_JOIN:
        if (!c->v->released) join(c->v, c->slot, c->t);
        break;
    case C_LEAVE:
        leave(c->v, c->slot);
        break;
    case C_ADDR:
        c->v->fd = c->fd;
        c->v->addr = c->addr;
        c->v->addrlen = c->addrlen;
        break;
    case C_CLOSE:
        release(w->eng, c->v);
        break;
    case C_G_LIVE:
        run_group_live(w, c->g, c);
        break;
    case C_S_UNIT:
        run_sink_unit(w, c->s, c->pkt, (c->a & 1) != 0, (c->a & 2) != 0);
        break;
    case C_S_JOIN:
        if (!c->s->released) sink_join(c->s, c->g, c->a, c->b);
        break;
    case C_S_LEAVE:
        sink_leave(c->s);
        break;
    case C_S_FINISH:
        run_sink_finish(c->s);
        break;
    case C_S_CLOSE:
        sink_release(c->s);
        break;
    case C_BARRIER:
        pthread_mutex_lock(&c->barrier->mu);
        if (--c->barrier->remaining == 0) pthread_cond_broadcast(&c->barrier->cv);
        pthread_mutex_unlock(&c->barrier->mu);
        break;
    }
    ADD(&w->commands, 1);
}

static void *worker_main(void *arg) {
    Worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "rtp-fanout-%d", w->index);
    pthread_setname_np(pthread_self(), name);
    __atomic_store_n(&w->tid, (long)syscall(SYS_gettid), __ATOMIC_RELEASE);
    Cmd local[TAKE];
    for (;;) {
        pthread_mutex_lock(&w->mu);
        while (w->count == 0 && !w->stop) pthread_cond_wait(&w->cv, &w->mu);
        if (w->stop) {
            pthread_mutex_unlock(&w->mu);
            break;
        }
        unsigned n = w->count < TAKE ? w->count : TAKE;
        for (unsigned i = 0; i < n; i++) local[i] = w->ring[(w->head + i) % w->cap];
        w->head = (w->head + n) % w->cap;
        w->count -= n;
        pthread_cond_broadcast(&w->space);
        pthread_mutex_unlock(&w->mu);
        for (unsigned i = 0; i < n; i++) {
            run(w, &local[i]);
            cmd_release(&local[i]);
        }
    }
    return NULL;
}

/* -- the Python side ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Engine *e;
} EngineObject;

typedef struct {
    PyObject_HEAD
    EngineObject *engine;
    Table *t;
} TableObject;

typedef struct {
    PyObject_HEAD
    EngineObject *engine;
    Viewer *v;
} ViewerObject;

static PyTypeObject EngineType, TableType, ViewerType;

/* Queue (or, without threads, run) one command; takes the command's references.
 * Returns 1 queued/run, 0 dropped (data only: a full ring or a closed engine). */
static int submit(Engine *e, int wi, Cmd *c, int data) {
    Worker *w = &e->workers[wi];
    if (e->closed) { /* no thread any more: changes run here, packets go nowhere */
        if (!data) run(w, c);
        cmd_release(c);
        return !data;
    }
    if (!e->threaded) {
        run(w, c);
        cmd_release(c);
        return 1;
    }
    pthread_mutex_lock(&w->mu);
    if (data && w->count >= w->cap - CONTROL_HEADROOM) {
        pthread_mutex_unlock(&w->mu);
        ADD(&w->ring_drops, 1);
        cmd_release(c);
        return 0;
    }
    if (w->count == w->cap) { /* a change must not be lost: wait for room, GIL released */
        Py_BEGIN_ALLOW_THREADS
        while (w->count == w->cap && !w->stop) pthread_cond_wait(&w->space, &w->mu);
        Py_END_ALLOW_THREADS
        if (w->count == w->cap) { /* stopped meanwhile */
            pthread_mutex_unlock(&w->mu);
            cmd_release(c);
            return 0;
        }
    }
    w->ring[(w->head + w->count) % w->cap] = *c;
    if (w->count++ == 0) pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return 1;
}

static void engine_close(Engine *e) {
    if (e->closed) return;
    if (e->threaded) {
        for (int i = 0; i < e->nworkers; i++) {
            Worker *w = &e->workers[i];
            pthread_mutex_lock(&w->mu);
            w->stop = 1;
            pthread_cond_broadcast(&w->cv);
            pthread_cond_broadcast(&w->space);
            pthread_mutex_unlock(&w->mu);
        }
        Py_BEGIN_ALLOW_THREADS
        for (int i = 0; i < e->nworkers; i++)
            if (e->workers[i].started) pthread_join(e->workers[i].thread, NULL);
        Py_END_ALLOW_THREADS
        for (int i = 0; i < e->nworkers; i++) { /* what was still queued: changes run, */
            Worker *w = &e->workers[i];          /* packets are dropped */
            while (w->count > 0) {
                Cmd *c = &w->ring[w->head];
                w->head = (w->head + 1) % w->cap;
                w->count--;
                if (!IS_MEDIA(c->type)) run(w, c);
                cmd_release(c);
            }
        }
    }
    e->closed = 1;
    for (Viewer *v = e->open; v != NULL;) { /* viewers never closed: closed now */
        Viewer *next = v->next;
        __atomic_store_n(&v->closed, 1, __ATOMIC_SEQ_CST);
        release(e, v);
        v->prev = v->next = NULL;
        v = next;
    }
    e->open = NULL;
    for (Sink *s = e->sinks; s != NULL;) { /* sinks never closed: closed now */
        Sink *next = s->next;
        __atomic_store_n(&s->closed, 1, __ATOMIC_SEQ_CST);
        sink_release(s);
        s->prev = s->next = NULL;
        s = next;
    }
    e->sinks = NULL;
}

static void engine_free(Engine *e) {
    if (e == NULL) return;
    if (e->workers != NULL) {
        for (int i = 0; i < e->nworkers; i++) {
            Worker *w = &e->workers[i];
            free(w->ring);
            pthread_mutex_destroy(&w->mu);
            pthread_cond_destroy(&w->cv);
            pthread_cond_destroy(&w->space);
            pthread_cond_destroy(&w->idle);
        }
        free(e->workers);
    }
    free(e);
}

static int Engine_init(EngineObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"protect", "dealloc", "workers", "ring_slots", NULL};
    unsigned long long protect = 0, dealloc = 0;
    int workers = 1, ring_slots = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "KK|ii", kwlist, &protect, &dealloc, &workers,
                                     &ring_slots))
        return -1;
    if (self->e != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Engine is already initialised");
        return -1;
    }
    if (workers < 1 || workers > MAX_WORKERS) {
        PyErr_Format(PyExc_ValueError, "workers must be 1..%d, not %d", MAX_WORKERS, workers);
        return -1;
    }
    if (ring_slots < 2 * CONTROL_HEADROOM || ring_slots > (1 << 20)) {
        PyErr_Format(PyExc_ValueError, "ring_slots must be %d..%d, not %d",
                     2 * CONTROL_HEADROOM, 1 << 20, ring_slots);
        return -1;
    }
    Engine *e = calloc(1, sizeof(Engine));
    if (e == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    e->protect = (srtp_protect_fn)(uintptr_t)protect;
    e->dealloc = (srtp_dealloc_fn)(uintptr_t)dealloc;
    e->nworkers = workers;
    e->threaded = workers > 1;
    e->workers = calloc((size_t)workers, sizeof(Worker));
    if (e->workers == NULL) {
        free(e);
        PyErr_NoMemory();
        return -1;
    }
    for (int i = 0; i < workers; i++) {
        Worker *w = &e->workers[i];
        w->eng = e;
        w->index = i;
        w->cap = (unsigned)ring_slots;
        pthread_mutex_init(&w->mu, NULL);
        pthread_cond_init(&w->cv, NULL);
        pthread_cond_init(&w->space, NULL);
        pthread_cond_init(&w->idle, NULL);
        w->ring = e->threaded ? calloc((size_t)ring_slots, sizeof(Cmd)) : NULL;
        if (e->threaded && w->ring == NULL) {
            self->e = e;
            engine_close(e);
            PyErr_NoMemory();
            return -1;
        }
    }
    self->e = e;
    if (e->threaded) {
        for (int i = 0; i < workers; i++) {
            Worker *w = &e->workers[i];
            int rc = pthread_create(&w->thread, NULL, worker_main, w);
            if (rc != 0) {
                engine_close(e);
                PyErr_Format(PyExc_RuntimeError, "cannot start a fan-out thread: %s",
                             strerror(rc));
                return -1;
            }
            w->started = 1;
        }
        Py_BEGIN_ALLOW_THREADS /* every thread runs (and knows its tid) before we return */
        for (int i = 0; i < workers; i++)
            while (__atomic_load_n(&e->workers[i].tid, __ATOMIC_ACQUIRE) == 0) sched_yield();
        Py_END_ALLOW_THREADS
    } else {
        e->workers[0].tid = 0;
    }
    return 0;
}

static void Engine_dealloc(EngineObject *self) {
    if (self->e != NULL) {
        engine_close(self->e);
        engine_free(self->e);
        self->e = NULL;
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int engine_ok(EngineObject *self) {
    if (self->e == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Engine is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *Engine_close(EngineObject *self, PyObject *Py_UNUSED(arg)) {
    if (!engine_ok(self)) return NULL;
    engine_close(self->e);
    Py_RETURN_NONE;
}

static PyObject *Engine_set_srtp(EngineObject *self, PyObject *args) {
    /* the libsrtp functions, for an engine made without them (the RTMP relay made the
     * shared pool first); before any viewer exists, so no worker reads them concurrently */
    unsigned long long protect = 0, dealloc = 0;
    if (!engine_ok(self)) return NULL;
    if (!PyArg_ParseTuple(args, "KK", &protect, &dealloc)) return NULL;
    Engine *e = self->e;
    if (e->protect != NULL || e->dealloc != NULL) {
        if (e->protect == (srtp_protect_fn)(uintptr_t)protect &&
            e->dealloc == (srtp_dealloc_fn)(uintptr_t)dealloc)
            Py_RETURN_NONE;
        PyErr_SetString(PyExc_RuntimeError, "the engine has other SRTP functions already");
        return NULL;
    }
    if (e->open != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "set_srtp() must come before the first viewer");
        return NULL;
    }
    e->protect = (srtp_protect_fn)(uintptr_t)protect;
    e->dealloc = (srtp_dealloc_fn)(uintptr_t)dealloc;
    Py_RETURN_NONE;
}

static PyObject *Engine_table(EngineObject *self, PyObject *Py_UNUSED(arg)) {
    if (!engine_ok(self)) return NULL;
    Engine *e = self->e;
    Table *t = calloc(1, sizeof(Table) + sizeof(Stripe) * (size_t)e->nworkers);
    if (t == NULL) return PyErr_NoMemory();
    t->refs = 1;
    t->nstripes = e->nworkers;
    TableObject *obj = PyObject_New(TableObject, &TableType);
    if (obj == NULL) {
        free(t);
        return NULL;
    }
    Py_INCREF(self);
    obj->engine = self;
    obj->t = t;
    return (PyObject *)obj;
}

/* (host, port) -> sockaddr; 0 ok, -1 with ValueError */
static int parse_addr(PyObject *addr, struct sockaddr_in6 *out, socklen_t *len) {
    const char *host;
    int port;
    if (!PyArg_ParseTuple(addr, "si", &host, &port)) return -1;
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *sa = (struct sockaddr_in *)out;
    if (port <= 0 || port > 65535) goto bad;
    if (inet_pton(AF_INET, host, &sa->sin_addr) == 1) {
        sa->sin_family = AF_INET;
        sa->sin_port = htons((unsigned short)port);
        *len = sizeof(*sa);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &out->sin6_addr) == 1) {
        out->sin6_family = AF_INET6;
        out->sin6_port = htons((unsigned short)port);
        *len = sizeof(*out);
        return 0;
    }
bad:
    PyErr_Format(PyExc_ValueError, "not a numeric address: %R", addr);
    return -1;
}

static PyObject *Engine_viewer(EngineObject *self, PyObject *args) {
    unsigned long long ctx;
    const char *key = NULL, *salt = NULL;
    Py_ssize_t key_len = 0, salt_len = 0;
    if (!engine_ok(self)) return NULL;
    if (!PyArg_ParseTuple(args, "K|y#y#", &ctx, &key, &key_len, &salt, &salt_len)) return NULL;
    if (key != NULL && (key_len != GCM_KEY || salt == NULL || salt_len != GCM_SALT)) {
        PyErr_SetString(PyExc_ValueError, "an AES-128-GCM session key is 16 bytes, its salt 12");
        return NULL;
    }
    Engine *e = self->e;
    Viewer *v = calloc(1, sizeof(Viewer));
    if (v == NULL) return PyErr_NoMemory();
    if (key != NULL) /* NULL without libcrypto's functions: libsrtp protects its RTP */
        v->gcm = gcm_new((const unsigned char *)key, (const unsigned char *)salt);
    ViewerObject *obj = PyObject_New(ViewerObject, &ViewerType);
    if (obj == NULL) {
        free(v);
        return NULL;
    }
    v->refs = 1;
    v->fd = -1;
    v->st.fd = -1;
    v->st.wake_fd = -1;
    pthread_mutex_init(&v->st.mu, NULL);
    v->ctx = (void *)(uintptr_t)ctx;
    for (int i = 0; i < MAX_SLOTS; i++) v->slots[i].index = -1;
    int best = 0;
    for (int i = 1; i < e->nworkers; i++)
        if (e->workers[i].viewers < e->workers[best].viewers) best = i;
    v->worker = best;
    e->workers[best].viewers++;
    if (e->closed) { /* nothing will ever send for it */
        v->closed = 1;
        release(e, v);
    } else {
        v->next = e->open;
        if (e->open) e->open->prev = v;
        e->open = v;
    }
    Py_INCREF(self);
    obj->engine = self;
    obj->v = v;
    return (PyObject *)obj;
}

static PyObject *Engine_sync(EngineObject *self, PyObject *Py_UNUSED(arg)) {
    /* wait until every command queued so far has run */
    if (!engine_ok(self)) return NULL;
    Engine *e = self->e;
    if (!e->threaded || e->closed) Py_RETURN_NONE;
    Barrier b;
    pthread_mutex_init(&b.mu, NULL);
    pthread_cond_init(&b.cv, NULL);
    b.remaining = e->nworkers;
    for (int i = 0; i < e->nworkers; i++) {
        Cmd c = {0};
        c.type = C_BARRIER;
        c.barrier = &b;
        submit(e, i, &c, 0);
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&b.mu);
    while (b.remaining > 0) pthread_cond_wait(&b.cv, &b.mu);
    pthread_mutex_unlock(&b.mu);
    Py_END_ALLOW_THREADS
    pthread_mutex_destroy(&b.mu);
    pthread_cond_destroy(&b.cv);
    Py_RETURN_NONE;
}

static PyObject *Engine_stats(EngineObject *self, PyObject *Py_UNUSED(arg)) {
    if (!engine_ok(self)) return NULL;
    Engine *e = self->e;
    PyObject *list = PyList_New(e->nworkers);
    if (list == NULL) return NULL;
    for (int i = 0; i < e->nworkers; i++) {
        Worker *w = &e->workers[i];
        unsigned queued = 0;
        if (e->threaded) {
            pthread_mutex_lock(&w->mu);
            queued = w->count;
            pthread_mutex_unlock(&w->mu);
        }
        PyObject *d = Py_BuildValue("{s:l,s:i,s:K,s:K,s:I}", "tid", LOAD(&w->tid), "viewers",
                                    w->viewers, "ring_drops",
                                    (unsigned long long)LOAD(&w->ring_drops), "commands",
                                    (unsigned long long)LOAD(&w->commands), "queued", queued);
        if (d == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, d);
    }
    return list;
}

static PyObject *Engine_get_workers(EngineObject *self, void *Py_UNUSED(c)) {
    if (!engine_ok(self)) return NULL;
    return PyLong_FromLong(self->e->nworkers);
}

static PyObject *Engine_get_threaded(EngineObject *self, void *Py_UNUSED(c)) {
    if (!engine_ok(self)) return NULL;
    return PyBool_FromLong(self->e->threaded);
}

static PyObject *Engine_get_closed(EngineObject *self, void *Py_UNUSED(c)) {
    if (!engine_ok(self)) return NULL;
    return PyBool_FromLong(self->e->closed);
}

static PyObject *Engine_hub(EngineObject *self, PyObject *arg);
static PyObject *Engine_group(EngineObject *self, PyObject *arg);
static PyObject *Engine_sink(EngineObject *self, PyObject *args, PyObject *kwds);

static PyMethodDef Engine_methods[] = {
    {"set_srtp", (PyCFunction)Engine_set_srtp, METH_VARARGS,
     "set_srtp(protect, dealloc): libsrtp's functions for an engine made without them."},
    {"hub", (PyCFunction)Engine_hub, METH_NOARGS,
     "hub(): a new Hub (an eventfd and the tokens of sinks that need attention)."},
    {"group", (PyCFunction)Engine_group, METH_NOARGS,
     "group(): a new Group (the RTMP players of one published stream)."},
    {"sink", (PyCFunction)(void (*)(void))Engine_sink, METH_VARARGS | METH_KEYWORDS,
     "sink(hub, token, fd, limit, max_skips): a new RTMP sink writing socket fd."},
    {"table", (PyCFunction)Engine_table, METH_NOARGS, "table(): a new fan-out table."},
    {"viewer", (PyCFunction)Engine_viewer, METH_VARARGS,
     "viewer(ctx[, gcm_key, gcm_salt]): a new viewer owning the libsrtp outbound session at "
     "address ctx; with an AES-128-GCM session key and salt (and gcm_install done) its RTP is "
     "protected by srtp_gcm.h instead of libsrtp (ctx still freed with it)."},
    {"sync", (PyCFunction)Engine_sync, METH_NOARGS,
     "sync(): wait until every command queued so far has run."},
    {"stats", (PyCFunction)Engine_stats, METH_NOARGS,
     "stats(): per worker tid, viewers, ring_drops, commands, queued."},
    {"close", (PyCFunction)Engine_close, METH_NOARGS,
     "close(): stop and join the workers, close every viewer (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Engine_getset[] = {
    {"workers", (getter)Engine_get_workers, NULL, "number of workers", NULL},
    {"threaded", (getter)Engine_get_threaded, NULL, "True when workers are threads", NULL},
    {"closed", (getter)Engine_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject EngineType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtp._fanout.Engine",
    .tp_basicsize = sizeof(EngineObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Engine(protect, dealloc, workers=1, ring_slots=4096): the fan-out workers.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Engine_init,
    .tp_dealloc = (destructor)Engine_dealloc,
    .tp_methods = Engine_methods,
    .tp_getset = Engine_getset,
};

/* -- Table ------------------------------------------------------------------------------- */

static PyObject *Table_fan_out(TableObject *self, PyObject *args) {
    Py_buffer data;
    unsigned int seq, ts, flags = 0;
    if (!PyArg_ParseTuple(args, "y*II|I", &data, &seq, &ts, &flags)) return NULL;
    Engine *e = self->engine->e;
    Table *t = self->t;
    if (t->closed || e->closed || data.len > 65535) {
        PyBuffer_Release(&data);
        Py_RETURN_NONE;
    }
    Pkt *p = malloc(sizeof(Pkt) + (size_t)data.len);
    if (p == NULL) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    p->refs = 1; /* ours, until every worker has its own */
    p->len = (int)data.len;
    memcpy(p->data, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    for (int i = 0; i < e->nworkers; i++) {
        Stripe *st = &t->stripes[i];
        if (!e->threaded) { /* inline, the GIL held: no references needed */
            run_live(&e->workers[i], t, p, seq, ts, flags);
            ADD(&e->workers[i].commands, 1);
            continue;
        }
        Cmd c = {0};
        c.type = C_LIVE;
        c.a = seq;
        c.b = ts;
        c.c = flags;
        __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&t->refs, 1, __ATOMIC_RELAXED);
        c.pkt = p;
        c.t = t;
        if (!submit(e, i, &c, 1)) ADD(&st->missed, 1);
    }
    pkt_unref(p);
    Py_RETURN_NONE;
}

static PyObject *Table_close(TableObject *self, PyObject *Py_UNUSED(arg)) {
    __atomic_store_n(&self->t->closed, 1, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *Table_len(TableObject *self, PyObject *Py_UNUSED(arg)) {
    /* viewers on this table (a snapshot: workers change it) */
    long n = 0;
    Engine *e = self->engine->e;
    (void)e;
    for (int i = 0; i < self->t->nstripes; i++)
        n += __atomic_load_n(&self->t->stripes[i].n, __ATOMIC_RELAXED);
    return PyLong_FromLong(n);
}

static void Table_dealloc(TableObject *self) {
    __atomic_store_n(&self->t->closed, 1, __ATOMIC_RELEASE);
    table_unref(self->t);
    Py_DECREF(self->engine);
    PyObject_Free(self);
}

static PyMethodDef Table_methods[] = {
    {"fan_out", (PyCFunction)Table_fan_out, METH_VARARGS,
     "fan_out(data, seq, ts, flags=0): send one producer packet to every viewer on this "
     "table (flags: FLAG_KEYFRAME, FLAG_VIDEO, for the keyframe gate of stream viewers)."},
    {"close", (PyCFunction)Table_close, METH_NOARGS,
     "close(): queued and later packets of this table are not sent."},
    {"count", (PyCFunction)Table_len, METH_NOARGS, "count(): viewers on this table."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TableType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtp._fanout.Table",
    .tp_basicsize = sizeof(TableObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The fan-out table of one Source track (Engine.table()).",
    .tp_dealloc = (destructor)Table_dealloc,
    .tp_methods = Table_methods,
};

/* -- Viewer ------------------------------------------------------------------------------ */

static int slot_ok(int slot) {
    if (slot < 0 || slot >= MAX_SLOTS) {
        PyErr_Format(PyExc_ValueError, "slot must be 0..%d, not %d", MAX_SLOTS - 1, slot);
        return 0;
    }
    return 1;
}

static int viewer_submit(ViewerObject *self, Cmd *c, int data) {
    Viewer *v = self->v;
    __atomic_add_fetch(&v->refs, 1, __ATOMIC_RELAXED);
    c->v = v;
    return submit(self->engine->e, v->worker, c, data);
}

static PyObject *Viewer_set_track(ViewerObject *self, PyObject *args) {
    int slot;
    unsigned int pt, ssrc, sd, tsd;
    if (!PyArg_ParseTuple(args, "iIIII", &slot, &pt, &ssrc, &sd, &tsd)) return NULL;
    if (!slot_ok(slot)) return NULL;
    Cmd c = {0};
    c.type = C_SET_TRACK;
    c.slot = slot;
    c.a = pt & 0x7F;
    c.b = ssrc;
    c.c = sd & 0xFFFF;
    c.d = tsd;
    viewer_submit(self, &c, 0);
    Py_RETURN_NONE;
}

static PyObject *Viewer_join(ViewerObject *self, PyObject *args) {
    int slot;
    TableObject *table;
    if (!PyArg_ParseTuple(args, "iO!", &slot, &TableType, &table)) return NULL;
    if (!slot_ok(slot)) return NULL;
    if (table->engine != self->engine) {
        PyErr_SetString(PyExc_ValueError, "the table belongs to another engine");
        return NULL;
    }
    if (self->v->closed) Py_RETURN_NONE;
    Cmd c = {0};
    c.type = C_JOIN;
    c.slot = slot;
    __atomic_add_fetch(&table->t->refs, 1, __ATOMIC_RELAXED);
    c.t = table->t;
    viewer_submit(self, &c, 0);
    Py_RETURN_NONE;
}

static PyObject *Viewer_leave(ViewerObject *self, PyObject *args) {
    int slot;
    if (!PyArg_ParseTuple(args, "i", &slot)) return NULL;
    if (!slot_ok(slot)) return NULL;
    Cmd c = {0};
    c.type = C_LEAVE;
    c.slot = slot;
    viewer_submit(self, &c, 0);
    Py_RETURN_NONE;
}

static PyObject *Viewer_set_address(ViewerObject *self, PyObject *args) {
    int fd;
    PyObject *addr;
    if (!PyArg_ParseTuple(args, "iO!", &fd, &PyTuple_Type, &addr)) return NULL;
    Cmd c = {0};
    c.type = C_ADDR;
    c.fd = fd;
    if (parse_addr(addr, &c.addr, &c.addrlen) < 0) return NULL;
    viewer_submit(self, &c, 0);
    Py_RETURN_NONE;
}

static PyObject *Viewer_send(ViewerObject *self, PyObject *args) {
    int slot;
    unsigned int kind = K_MEDIA, reason = 0;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "iy*|II", &slot, &data, &kind, &reason)) return NULL;
    if (!slot_ok(slot) || kind > K_RTX) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "bad kind %u", kind);
        PyBuffer_Release(&data);
        return NULL;
    }
    if (self->v->closed) {
        PyBuffer_Release(&data);
        Py_RETURN_FALSE;
    }
    if (data.len > 65535) {
        ADD(&self->v->refused[reason % N_REASONS], 1);
        PyBuffer_Release(&data);
        Py_RETURN_FALSE;
    }
    Pkt *p = malloc(sizeof(Pkt) + (size_t)data.len);
    if (p == NULL) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    p->refs = 1;
    p->len = (int)data.len;
    memcpy(p->data, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    Cmd c = {0};
    c.type = C_RAW;
    c.slot = slot;
    c.pkt = p;
    c.a = kind;
    c.b = reason;
    if (!viewer_submit(self, &c, 1)) {
        ADD(&self->v->slots[slot].dropped, 1);
        Py_RETURN_FALSE;
    }
    Py_RETURN_TRUE;
}

/* mark closed, wait until its worker is outside a send batch, queue the release */
static void viewer_close(ViewerObject *self) {
    Viewer *v = self->v;
    Engine *e = self->engine->e;
    if (__atomic_exchange_n(&v->closed, 1, __ATOMIC_SEQ_CST)) return;
    if (v->prev) v->prev->next = v->next;
    else if (e->open == v) e->open = v->next;
    if (v->next) v->next->prev = v->prev;
    v->prev = v->next = NULL;
    e->workers[v->worker].viewers--;
    if (e->threaded && !e->closed) {
        Worker *w = &e->workers[v->worker];
        uint64_t s = __atomic_load_n(&w->batch_seq, __ATOMIC_SEQ_CST);
        if (s & 1) { /* sleep (the GIL released) until that batch is over: a few µs */
            Py_BEGIN_ALLOW_THREADS
            pthread_mutex_lock(&w->mu);
            __atomic_add_fetch(&w->waiters, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&w->batch_seq, __ATOMIC_SEQ_CST) == s)
                pthread_cond_wait(&w->idle, &w->mu);
            __atomic_sub_fetch(&w->waiters, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&w->mu);
            Py_END_ALLOW_THREADS
        }
    }
    Cmd c = {0};
    c.type = C_CLOSE;
    viewer_submit(self, &c, 0);
}

static PyObject *Viewer_close(ViewerObject *self, PyObject *Py_UNUSED(arg)) {
    viewer_close(self);
    Py_RETURN_NONE;
}

static PyObject *Viewer_roc(ViewerObject *self, PyObject *args) {
    /* the caller makes sure the worker is done with the viewer (engine.sync after leave) */
    unsigned int ssrc;
    if (!PyArg_ParseTuple(args, "I", &ssrc)) return NULL;
    Viewer *v = self->v;
    int64_t roc = v->gcm != NULL ? gcm_roc(v->gcm, ssrc) : -1;
    if (roc < 0) Py_RETURN_NONE;
    return PyLong_FromLongLong(roc);
}

static PyObject *Viewer_get_gcm(ViewerObject *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(self->v->gcm != NULL);
}


/* -- the stream transport, Python side (the GIL held; `mu` taken briefly) ------------------ */

static PyObject *Viewer_attach_stream(ViewerObject *self, PyObject *args) {
    int fd, wake_fd;
    Py_ssize_t limit, low_water, head_left = 0;
    Py_buffer pending;
    if (!PyArg_ParseTuple(args, "iinny*|n", &fd, &wake_fd, &limit, &low_water, &pending,
                          &head_left))
        return NULL;
    if (fd < 0 || limit <= 0 || low_water < 0 || head_left < 0 || head_left > pending.len) {
        PyBuffer_Release(&pending);
        PyErr_SetString(PyExc_ValueError, "attach_stream needs an fd and a positive limit");
        return NULL;
    }
    Stream *q = &self->v->st;
    pthread_mutex_lock(&q->mu);
    if (q->fd >= 0) {
        pthread_mutex_unlock(&q->mu);
        PyBuffer_Release(&pending);
        PyErr_SetString(PyExc_RuntimeError, "a stream is attached already: detach_stream() first");
        return NULL;
    }
    q->len = q->head = 0;
    q->frame_left = (size_t)head_left;
    q->failed = q->notified = q->skipping = 0;
    q->limit = (size_t)limit;
    q->low_water = (size_t)low_water;
    q->wake_fd = wake_fd;
    if (pending.len > 0) {
        if (!stream_room(q, (size_t)pending.len)) {
            pthread_mutex_unlock(&q->mu);
            PyBuffer_Release(&pending);
            PyErr_SetString(PyExc_ValueError, "the pending bytes exceed the stream's limit");
            return NULL;
        }
        stream_append(q, pending.buf, (size_t)pending.len);
    }
    __atomic_store_n(&q->fd, fd, __ATOMIC_RELEASE);
    stream_wake(q); /* bytes handed over wait for writability */
    pthread_mutex_unlock(&q->mu);
    PyBuffer_Release(&pending);
    Py_RETURN_NONE;
}

static PyObject *Viewer_detach_stream(ViewerObject *self, PyObject *Py_UNUSED(arg)) {
    Stream *q = &self->v->st;
    pthread_mutex_lock(&q->mu);
    PyObject *rest = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)q->len);
    Py_ssize_t head_left = (Py_ssize_t)q->frame_left;
    if (rest == NULL) {
        pthread_mutex_unlock(&q->mu);
        return NULL;
    }
    char *out = PyBytes_AS_STRING(rest);
    if (q->len) {
        size_t first = q->cap - q->head < q->len ? q->cap - q->head : q->len;
        memcpy(out, q->buf + q->head, first);
        memcpy(out + first, q->buf, q->len - first);
    }
    q->len = q->head = q->frame_left = 0;
    q->notified = 0;
    q->wake_fd = -1;
    __atomic_store_n(&q->fd, -1, __ATOMIC_RELEASE);
    free(q->buf);
    q->buf = NULL;
    q->cap = 0;
    pthread_mutex_unlock(&q->mu);
    return Py_BuildValue("(Nn)", rest, head_left);
}

static PyObject *Viewer_send_frame(ViewerObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    int ok = 0;
    if (!closed(self->v)) {
        Stream *q = &self->v->st;
        pthread_mutex_lock(&q->mu);
        ok = stream_frame_locked(q, data.buf, (size_t)data.len);
        pthread_mutex_unlock(&q->mu);
    }
    PyBuffer_Release(&data);
    return PyBool_FromLong(ok);
}

static PyObject *Viewer_flush(ViewerObject *self, PyObject *Py_UNUSED(arg)) {
    Stream *q = &self->v->st;
    pthread_mutex_lock(&q->mu);
    long left = -1;
    if (q->fd >= 0) {
        stream_flush_locked(q);
        left = q->failed ? -1 : (long)q->len;
    }
    pthread_mutex_unlock(&q->mu);
    return PyLong_FromLong(left);
}

static PyObject *Viewer_admit(ViewerObject *self, PyObject *args) {
    int video, keyframe;
    if (!PyArg_ParseTuple(args, "pp", &video, &keyframe)) return NULL;
    Stream *q = &self->v->st;
    pthread_mutex_lock(&q->mu);
    int ok = stream_admit_locked(q, video, keyframe);
    pthread_mutex_unlock(&q->mu);
    return PyBool_FromLong(ok);
}

static PyObject *Viewer_overflowed(ViewerObject *self, PyObject *Py_UNUSED(arg)) {
    Stream *q = &self->v->st;
    pthread_mutex_lock(&q->mu);
    stream_overflowed(q);
    pthread_mutex_unlock(&q->mu);
    Py_RETURN_NONE;
}

static PyObject *Viewer_stream_stats(ViewerObject *self, PyObject *Py_UNUSED(arg)) {
    Stream *q = &self->v->st;
    pthread_mutex_lock(&q->mu);
    PyObject *d = Py_BuildValue(
        "{s:n,s:K,s:K,s:K,s:K,s:K,s:K,s:O,s:O,s:O}", "queued", (Py_ssize_t)q->len, "peak",
        (unsigned long long)LOAD(&q->peak), "frames", (unsigned long long)LOAD(&q->frames),
        "bytes_out", (unsigned long long)LOAD(&q->bytes_out), "skips",
        (unsigned long long)LOAD(&q->skips), "skipped", (unsigned long long)LOAD(&q->skipped),
        "queue_full", (unsigned long long)LOAD(&q->queue_full), "skipping",
        q->skipping ? Py_True : Py_False, "failed", q->failed ? Py_True : Py_False, "attached",
        q->fd >= 0 ? Py_True : Py_False);
    pthread_mutex_unlock(&q->mu);
    return d;
}

static PyObject *Viewer_counters(ViewerObject *self, PyObject *args) {
    int slot;
    if (!PyArg_ParseTuple(args, "i", &slot)) return NULL;
    if (!slot_ok(slot)) return NULL;
    Slot *s = &self->v->slots[slot];
    return Py_BuildValue("KKKK", (unsigned long long)LOAD(&s->packets),
                         (unsigned long long)LOAD(&s->bytes),
                         (unsigned long long)LOAD(&s->dropped),
                         (unsigned long long)LOAD(&s->retransmitted));
}

static PyObject *Viewer_refused(ViewerObject *self, PyObject *Py_UNUSED(arg)) {
    PyObject *t = PyTuple_New(N_REASONS);
    if (t == NULL) return NULL;
    for (int i = 0; i < N_REASONS; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(LOAD(&self->v->refused[i]));
        if (n == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, n);
    }
    return t;
}

static PyObject *Viewer_get_rtx_sent(ViewerObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(LOAD(&self->v->rtx_sent));
}

static PyObject *Viewer_get_worker(ViewerObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(self->v->worker);
}

static PyObject *Viewer_get_closed(ViewerObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(__atomic_load_n(&self->v->closed, __ATOMIC_SEQ_CST));
}

static void Viewer_dealloc(ViewerObject *self) {
    viewer_close(self);
    viewer_unref(self->v);
    Py_DECREF(self->engine);
    PyObject_Free(self);
}

static PyMethodDef Viewer_methods[] = {
    {"set_track", (PyCFunction)Viewer_set_track, METH_VARARGS,
     "set_track(slot, payload_type, ssrc, seq_delta, ts_delta)"},
    {"join", (PyCFunction)Viewer_join, METH_VARARGS,
     "join(slot, table): live packets of `table` go to this slot from now on"},
    {"leave", (PyCFunction)Viewer_leave, METH_VARARGS, "leave(slot): off its table"},
    {"set_address", (PyCFunction)Viewer_set_address, METH_VARARGS,
     "set_address(fd, (host, port)): where (and on which socket) to send"},
    {"send", (PyCFunction)Viewer_send, METH_VARARGS,
     "send(slot, rtp, kind=0, reason=0) -> bool queued: protect and send one ready RTP packet "
     "(kind 0 media, 1 retransmission, 2 RTX; reason: index of the refusal counter)"},
    {"close", (PyCFunction)Viewer_close, METH_NOARGS,
     "close(): nothing is sent for this viewer after this returns (idempotent)"},
    {"roc", (PyCFunction)Viewer_roc, METH_VARARGS,
     "roc(ssrc) -> int | None: the rollover counter of an RTP stream its GCM context sent"},
    {"attach_stream", (PyCFunction)Viewer_attach_stream, METH_VARARGS,
     "attach_stream(fd, wake_fd, limit, low_water, pending): from now on this viewer's packets "
     "go RFC 4571-framed on the stream socket fd (non-blocking writes; `pending` framed bytes "
     "first, the first head_left of them the rest of a started frame; at most `limit` bytes queued, then the keyframe gate; wake_fd, an eventfd, is "
     "written when the queue needs the socket's writability: call flush() then)"},
    {"detach_stream", (PyCFunction)Viewer_detach_stream, METH_NOARGS,
     "detach_stream() -> (bytes, head_left): stop writing the stream; returns what was still "
     "queued and how many of its first bytes finish a frame already started on the wire"},
    {"send_frame", (PyCFunction)Viewer_send_frame, METH_VARARGS,
     "send_frame(packet) -> bool: one frame (STUN, DTLS, SRTCP) in order with the media"},
    {"flush", (PyCFunction)Viewer_flush, METH_NOARGS,
     "flush() -> bytes still queued after writing what the kernel takes (-1: not attached or "
     "the connection failed)"},
    {"admit", (PyCFunction)Viewer_admit, METH_VARARGS,
     "admit(video, keyframe) -> bool: the keyframe gate (a skip is counted)"},
    {"overflowed", (PyCFunction)Viewer_overflowed, METH_NOARGS,
     "overflowed(): skip video to the next keyframe"},
    {"stream_stats", (PyCFunction)Viewer_stream_stats, METH_NOARGS,
     "stream_stats() -> dict: queued, peak, frames, bytes_out, skips, skipped, queue_full, "
     "skipping, failed, attached"},
    {"counters", (PyCFunction)Viewer_counters, METH_VARARGS,
     "counters(slot) -> (packets, bytes, dropped, retransmitted)"},
    {"refused", (PyCFunction)Viewer_refused, METH_NOARGS,
     "refused() -> SRTP refusals of send() by reason index"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Viewer_getset[] = {
    {"rtx_sent", (getter)Viewer_get_rtx_sent, NULL, "RTX packets sent", NULL},
    {"worker", (getter)Viewer_get_worker, NULL, "the worker that owns this viewer", NULL},
    {"closed", (getter)Viewer_get_closed, NULL, "True after close()", NULL},
    {"gcm", (getter)Viewer_get_gcm, NULL,
     "True when its RTP is protected by the fan-out's AES-GCM (srtp_gcm.h), not libsrtp", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ViewerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtp._fanout.Viewer",
    .tp_basicsize = sizeof(ViewerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One viewer's fan-out state (Engine.viewer(ctx[, gcm_key, gcm_salt])).",
    .tp_dealloc = (destructor)Viewer_dealloc,
    .tp_methods = Viewer_methods,
    .tp_getset = Viewer_getset,
};

/* -- RTMP sinks, Python side ---------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    Hub *h;
} HubObject;

typedef struct {
    PyObject_HEAD
    EngineObject *engine;
    Group *g;
} GroupObject;

typedef struct {
    PyObject_HEAD
    EngineObject *engine;
    Sink *s;
} SinkObject;

static PyTypeObject HubType, GroupType, SinkType;

static PyObject *Engine_hub(EngineObject *self, PyObject *Py_UNUSED(arg)) {
    if (!engine_ok(self)) return NULL;
    Hub *h = calloc(1, sizeof(Hub));
    if (h == NULL) return PyErr_NoMemory();
    h->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->efd < 0) {
        free(h);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    h->refs = 1;
    pthread_mutex_init(&h->mu, NULL);
    HubObject *obj = PyObject_New(HubObject, &HubType);
    if (obj == NULL) {
        hub_unref(h);
        return NULL;
    }
    obj->h = h;
    return (PyObject *)obj;
}

static PyObject *Engine_group(EngineObject *self, PyObject *Py_UNUSED(arg)) {
    if (!engine_ok(self)) return NULL;
    Engine *e = self->e;
    Group *g = calloc(1, sizeof(Group) + sizeof(SinkStripe) * (size_t)e->nworkers);
    if (g == NULL) return PyErr_NoMemory();
    g->refs = 1;
    g->nstripes = e->nworkers;
    GroupObject *obj = PyObject_New(GroupObject, &GroupType);
    if (obj == NULL) {
        free(g);
        return NULL;
    }
    Py_INCREF(self);
    obj->engine = self;
    obj->g = g;
    return (PyObject *)obj;
}

static PyObject *Engine_sink(EngineObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"hub", "token", "fd", "limit", "max_skips", NULL};
    HubObject *hub;
    unsigned long long token;
    int fd;
    Py_ssize_t limit;
    unsigned int max_skips;
    if (!engine_ok(self)) return NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!KinI", kwlist, &HubType, &hub, &token, &fd,
                                     &limit, &max_skips))
        return NULL;
    if (fd < 0 || limit <= 0) {
        PyErr_SetString(PyExc_ValueError, "sink needs an fd and a positive limit");
        return NULL;
    }
    if (hub->h == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the hub is closed");
        return NULL;
    }
    Engine *e = self->e;
    Sink *s = calloc(1, sizeof(Sink));
    if (s == NULL) return PyErr_NoMemory();
    SinkObject *obj = PyObject_New(SinkObject, &SinkType);
    if (obj == NULL) {
        free(s);
        return NULL;
    }
    s->refs = 1;
    s->fd = fd;
    s->index = -1;
    s->token = token;
    s->limit = (size_t)limit;
    s->max_skips = max_skips;
    pthread_mutex_init(&s->mu, NULL);
    __atomic_add_fetch(&hub->h->refs, 1, __ATOMIC_RELAXED);
    s->hub = hub->h;
    int best = 0; /* the least loaded worker (viewers and sinks alike) */
    for (int i = 1; i < e->nworkers; i++)
        if (e->workers[i].viewers < e->workers[best].viewers) best = i;
    s->worker = best;
    e->workers[best].viewers++;
    if (e->closed) {
        s->closed = 1;
        s->released = 1;
    } else {
        s->next = e->sinks;
        if (e->sinks) e->sinks->prev = s;
        e->sinks = s;
    }
    Py_INCREF(self);
    obj->engine = self;
    obj->s = s;
    return (PyObject *)obj;
}

/* -- Hub -- */

static PyObject *Hub_fileno(HubObject *self, PyObject *Py_UNUSED(arg)) {
    if (self->h == NULL) {
        PyErr_SetString(PyExc_ValueError, "the hub is closed");
        return NULL;
    }
    return PyLong_FromLong(self->h->efd);
}

static PyObject *Hub_take(HubObject *self, PyObject *Py_UNUSED(arg)) {
    Hub *h = self->h;
    if (h == NULL) return PyList_New(0);
    uint64_t v;
    pthread_mutex_lock(&h->mu);
    if (h->efd >= 0) {
        ssize_t r = read(h->efd, &v, sizeof(v)); /* EAGAIN: nothing new */
        (void)r;
    }
    size_t n = h->n;
    uint64_t *copy = n ? malloc(n * sizeof(uint64_t)) : NULL;
    if (n && copy == NULL) {
        pthread_mutex_unlock(&h->mu);
        return PyErr_NoMemory();
    }
    if (n) memcpy(copy, h->tokens, n * sizeof(uint64_t));
    h->n = 0;
    h->armed = 0;
    pthread_mutex_unlock(&h->mu);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list != NULL && i < n; i++) {
        PyObject *t = PyLong_FromUnsignedLongLong(copy[i]);
        if (t == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    free(copy);
    return list;
}

static PyObject *Hub_close(HubObject *self, PyObject *Py_UNUSED(arg)) {
    /* the eventfd closes now (a sink that reports later writes nothing: mu) */
    Hub *h = self->h;
    self->h = NULL;
    if (h != NULL) {
        pthread_mutex_lock(&h->mu);
        if (h->efd >= 0) close(h->efd);
        h->efd = -1;
        pthread_mutex_unlock(&h->mu);
    }
    hub_unref(h);
    Py_RETURN_NONE;
}

static void Hub_dealloc(HubObject *self) {
    hub_unref(self->h);
    PyObject_Free(self);
}

static PyMethodDef Hub_methods[] = {
    {"fileno", (PyCFunction)Hub_fileno, METH_NOARGS,
     "fileno(): the eventfd that turns readable when sinks need attention"},
    {"take", (PyCFunction)Hub_take, METH_NOARGS,
     "take() -> list of the tokens of sinks that need attention (poll them)"},
    {"close", (PyCFunction)Hub_close, METH_NOARGS,
     "close(): drop this handle (the eventfd closes with the last sink)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject HubType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtp._fanout.Hub",
    .tp_basicsize = sizeof(HubObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Where sinks report what Python must act on (Engine.hub()).",
    .tp_dealloc = (destructor)Hub_dealloc,
    .tp_methods = Hub_methods,
};

/* -- Group -- */

static PyObject *Group_send(GroupObject *self, PyObject *args) {
    Py_buffer first, cont;
    unsigned int type_id, csid, ts, length, chunk;
    int keyframe;
    if (!PyArg_ParseTuple(args, "y*y*IIIIIp", &first, &cont, &type_id, &csid, &ts, &length,
                          &chunk, &keyframe))
        return NULL;
    Engine *e = self->engine->e;
    Group *g = self->g;
    if (g->closed || e->closed || csid < 2 || csid > 63 || type_id > 255 ||
        (size_t)first.len + (size_t)cont.len > 0x2000000) {
        PyBuffer_Release(&first);
        PyBuffer_Release(&cont);
        Py_RETURN_NONE;
    }
    Pkt *p = malloc(sizeof(Pkt) + (size_t)first.len + (size_t)cont.len);
    if (p == NULL) {
        PyBuffer_Release(&first);
        PyBuffer_Release(&cont);
        return PyErr_NoMemory();
    }
    p->refs = 1;
    p->len = (int)(first.len + cont.len);
    memcpy(p->data, first.buf, (size_t)first.len);
    memcpy(p->data + first.len, cont.buf, (size_t)cont.len);
    Cmd c = {0};
    c.type = C_G_LIVE;
    c.a = ts;
    c.b = type_id | csid << 8 | (keyframe ? 1u : 0u) << 16;
    c.d = length;
    c.e = chunk;
    c.f = (uint32_t)first.len;
    c.pkt = p; /* the inline runs read it from here; our reference until the end */
    PyBuffer_Release(&first);
    PyBuffer_Release(&cont);
    for (int i = 0; i < e->nworkers; i++) {
        if (!e->threaded) {
            run_group_live(&e->workers[i], g, &c);
            ADD(&e->workers[i].commands, 1);
            continue;
        }
        Cmd ci = c;
        __atomic_add_fetch(&p->refs, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&g->refs, 1, __ATOMIC_RELAXED);
        ci.g = g;
        if (!submit(e, i, &ci, 1)) ADD(&g->stripes[i].missed, 1);
    }
    pkt_unref(p);
    Py_RETURN_NONE;
}

static PyObject *Group_close(GroupObject *self, PyObject *Py_UNUSED(arg)) {
    __atomic_store_n(&self->g->closed, 1, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

static PyObject *Group_count(GroupObject *self, PyObject *Py_UNUSED(arg)) {
    long n = 0;
    for (int i = 0; i < self->g->nstripes; i++)
        n += __atomic_load_n(&self->g->stripes[i].n, __ATOMIC_RELAXED);
    return PyLong_FromLong(n);
}

static void Group_dealloc(GroupObject *self) {
    group_unref(self->g); /* messages still queued for it are sent (Group.close skips them) */
    Py_DECREF(self->engine);
    PyObject_Free(self);
}

static PyMethodDef Group_methods[] = {
    {"send", (PyCFunction)Group_send, METH_VARARGS,
     "send(first, cont, type_id, csid, timestamp, length, chunk_size, keyframe): one live "
     "RTMP message to every sink of the group (first: the first chunk's data; cont: the "
     "format-3 continuation for chunk_size, without extended timestamps)"},
    {"close", (PyCFunction)Group_close, METH_NOARGS,
     "close(): queued and later messages of this group are not sent"},
    {"count", (PyCFunction)Group_count, METH_NOARGS, "count(): sinks in this group"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GroupType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtp._fanout.Group",
    .tp_basicsize = sizeof(GroupObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The players of one published RTMP stream (Engine.group()).",
    .tp_dealloc = (destructor)Group_dealloc,
    .tp_methods = Group_methods,
};

/* -- Sink -- */

static int sink_submit(SinkObject *self, Cmd *c, int data) {
    Sink *s = self->s;
    __atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
    c->s = s;
    return submit(self->engine->e, s->worker, c, data);
}

static PyObject *Sink_unit(SinkObject *self, PyObject *args) {
    Py_buffer data;
    int keyframe = 0, control = 0;
    if (!PyArg_ParseTuple(args, "y*|pp", &data, &keyframe, &control)) return NULL;
    if (sink_closed(self->s) || data.len == 0 || data.len > 0x10000000) {
        PyBuffer_Release(&data);
        Py_RETURN_FALSE;
    }
    Pkt *p = malloc(sizeof(Pkt) + (size_t)data.len);
    if (p == NULL) {
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    p->refs = 1;
    p->len = (int)data.len;
    memcpy(p->data, data.buf, (size_t)data.len);
    PyBuffer_Release(&data);
    Cmd c = {0};
    c.type = C_S_UNIT;
    c.pkt = p;
    c.a = (keyframe ? 1u : 0u) | (control ? 2u : 0u);
    return PyBool_FromLong(sink_submit(self, &c, 0));
}

static PyObject *Sink_join(SinkObject *self, PyObject *args) {
    GroupObject *group;
    unsigned int stream_id, base;
    if (!PyArg_ParseTuple(args, "O!II", &GroupType, &group, &stream_id, &base)) return NULL;
    if (group->engine != self->engine) {
        PyErr_SetString(PyExc_ValueError, "the group belongs to another engine");
        return NULL;
    }
    if (sink_closed(self->s)) Py_RETURN_NONE;
    Cmd c = {0};
    c.type = C_S_JOIN;
    c.a = stream_id;
    c.b = base;
    __atomic_add_fetch(&group->g->refs, 1, __ATOMIC_RELAXED);
    c.g = group->g;
    sink_submit(self, &c, 0);
    Py_RETURN_NONE;
}

static PyObject *Sink_leave(SinkObject *self, PyObject *Py_UNUSED(arg)) {
    Cmd c = {0};
    c.type = C_S_LEAVE;
    sink_submit(self, &c, 0);
    Py_RETURN_NONE;
}

static PyObject *Sink_finish(SinkObject *self, PyObject *Py_UNUSED(arg)) {
    if (sink_closed(self->s)) Py_RETURN_NONE;
    Cmd c = {0};
    c.type = C_S_FINISH;
    sink_submit(self, &c, 0);
    Py_RETURN_NONE;
}

/* mark closed, wait until its worker is outside a write, queue the release */
static void sink_close(SinkObject *self) {
    Sink *s = self->s;
    Engine *e = self->engine->e;
    if (__atomic_exchange_n(&s->closed, 1, __ATOMIC_SEQ_CST)) return;
    if (s->prev) s->prev->next = s->next;
    else if (e->sinks == s) e->sinks = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    e->workers[s->worker].viewers--;
    if (e->threaded && !e->closed) {
        Worker *w = &e->workers[s->worker];
        uint64_t seq = __atomic_load_n(&w->batch_seq, __ATOMIC_SEQ_CST);
        if (seq & 1) { /* sleep (the GIL released) until that write is over */
            Py_BEGIN_ALLOW_THREADS
            pthread_mutex_lock(&w->mu);
            __atomic_add_fetch(&w->waiters, 1, __ATOMIC_SEQ_CST);
            while (__atomic_load_n(&w->batch_seq, __ATOMIC_SEQ_CST) == seq)
                pthread_cond_wait(&w->idle, &w->mu);
            __atomic_sub_fetch(&w->waiters, 1, __ATOMIC_SEQ_CST);
            pthread_mutex_unlock(&w->mu);
            Py_END_ALLOW_THREADS
        }
    }
    pthread_mutex_lock(&s->mu);
    s->fd = -1; /* never written again, whoever holds the mutex next */
    pthread_mutex_unlock(&s->mu);
    Cmd c = {0};
    c.type = C_S_CLOSE;
    sink_submit(self, &c, 0);
}

static PyObject *Sink_close(SinkObject *self, PyObject *Py_UNUSED(arg)) {
    sink_close(self);
    Py_RETURN_NONE;
}

enum { S_DROPPED = 1, S_FAILED = 2, S_FINISHED = 4, S_CLOSED = 8 };

static int sink_state_locked(Sink *s) {
    return (s->dropped ? S_DROPPED : 0) | (s->failed ? S_FAILED : 0) |
           (s->finished ? S_FINISHED : 0) | (s->fd < 0 ? S_CLOSED : 0);
}

static PyObject *Sink_poll(SinkObject *self, PyObject *Py_UNUSED(arg)) {
    /* write what the kernel takes of the queue; (queued bytes, state bits, skips) */
    Sink *s = self->s;
    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0 && !s->dropped) sink_flush_locked(s);
    if (s->len == 0) s->notified = 0; /* the next event tells Python again */
    size_t queued = s->len;
    int state = sink_state_locked(s);
    unsigned skips = s->skips;
    pthread_mutex_unlock(&s->mu);
    return Py_BuildValue("(niI)", (Py_ssize_t)queued, state, skips);
}

static PyObject *Sink_stats(SinkObject *self, PyObject *Py_UNUSED(arg)) {
    Sink *s = self->s;
    pthread_mutex_lock(&s->mu);
    PyObject *d = Py_BuildValue(
        "{s:n,s:K,s:K,s:K,s:I,s:K,s:K,s:O,s:O,s:O,s:i}", "queued", (Py_ssize_t)s->len, "peak",
        (unsigned long long)LOAD(&s->peak), "bytes_out", (unsigned long long)LOAD(&s->bytes_out),
        "messages", (unsigned long long)LOAD(&s->messages), "skips", s->skips, "skipped",
        (unsigned long long)LOAD(&s->skipped), "ring_missed",
        (unsigned long long)LOAD(&s->ring_missed), "dropped", s->dropped ? Py_True : Py_False,
        "failed", s->failed ? Py_True : Py_False, "finished", s->finished ? Py_True : Py_False,
        "worker", s->worker);
    pthread_mutex_unlock(&s->mu);
    return d;
}

static PyObject *Sink_get_bytes_out(SinkObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromUnsignedLongLong(LOAD(&self->s->bytes_out));
}

static PyObject *Sink_get_queued(SinkObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromSize_t(__atomic_load_n(&self->s->len, __ATOMIC_RELAXED));
}

static PyObject *Sink_get_worker(SinkObject *self, void *Py_UNUSED(c)) {
    return PyLong_FromLong(self->s->worker);
}

static PyObject *Sink_get_closed(SinkObject *self, void *Py_UNUSED(c)) {
    return PyBool_FromLong(sink_closed(self->s));
}

static void Sink_dealloc(SinkObject *self) {
    sink_close(self);
    sink_unref(self->s);
    Py_DECREF(self->engine);
    PyObject_Free(self);
}

static PyMethodDef Sink_methods[] = {
    {"unit", (PyCFunction)Sink_unit, METH_VARARGS,
     "unit(data, keyframe=False, control=False) -> bool queued: one whole RTMP message built "
     "in Python (a join burst's message, or control: never skipped), in order"},
    {"join", (PyCFunction)Sink_join, METH_VARARGS,
     "join(group, stream_id, base): live messages of the group from now on (its chunk "
     "headers carry stream_id and timestamps relative to base)"},
    {"leave", (PyCFunction)Sink_leave, METH_NOARGS, "leave(): off its group"},
    {"finish", (PyCFunction)Sink_finish, METH_NOARGS,
     "finish(): once everything queued so far is written, poll() reports finished"},
    {"poll", (PyCFunction)Sink_poll, METH_NOARGS,
     "poll() -> (queued, state, skips): write what the kernel takes; state bits 1 dropped, "
     "2 failed, 4 finished, 8 closed"},
    {"stats", (PyCFunction)Sink_stats, METH_NOARGS, "stats() -> dict of the sink's counters"},
    {"close", (PyCFunction)Sink_close, METH_NOARGS,
     "close(): its fd is never written after this returns (idempotent)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Sink_getset[] = {
    {"bytes_out", (getter)Sink_get_bytes_out, NULL, "bytes the kernel took", NULL},
    {"queued", (getter)Sink_get_queued, NULL, "bytes queued (a snapshot)", NULL},
    {"worker", (getter)Sink_get_worker, NULL, "the worker that owns this sink", NULL},
    {"closed", (getter)Sink_get_closed, NULL, "True after close()", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject SinkType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "rtp._fanout.Sink",
    .tp_basicsize = sizeof(SinkObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One RTMP player's socket, written by its worker (Engine.sink(...)).",
    .tp_dealloc = (destructor)Sink_dealloc,
    .tp_methods = Sink_methods,
    .tp_getset = Sink_getset,
};

/* -- the kernel floor (bench) -------------------------------------------------------------- */

typedef struct {
    struct sockaddr_in6 sa;
    socklen_t len;
} FloorAddr;

static PyObject *floor_addrs(PyObject *Py_UNUSED(self), PyObject *args) {
    /* floor_addrs([(host, port), ...]) -> bytes: the resolved addresses for floor_send */
    PyObject *addrs;
    if (!PyArg_ParseTuple(args, "O!", &PyList_Type, &addrs)) return NULL;
    Py_ssize_t n = PyList_GET_SIZE(addrs);
    PyObject *blob = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(FloorAddr));
    if (blob == NULL) return NULL;
    FloorAddr *fa = (FloorAddr *)PyBytes_AS_STRING(blob);
    memset(fa, 0, (size_t)n * sizeof(FloorAddr));
    for (Py_ssize_t i = 0; i < n; i++) {
        if (parse_addr(PyList_GET_ITEM(addrs, i), &fa[i].sa, &fa[i].len) < 0) {
            Py_DECREF(blob);
            return NULL;
        }
    }
    return blob;
}

static PyObject *floor_send(PyObject *Py_UNUSED(self), PyObject *args) {
    /* floor_send(fd, data, addrs_blob) -> sent: the kernel floor of the fan-out (bench): the
     * same ready bytes (no rewrite, no SRTP) to every address, one sendmmsg per 64, the GIL
     * released */
    int fd;
    Py_buffer data, blob;
    if (!PyArg_ParseTuple(args, "iy*y*", &fd, &data, &blob)) return NULL;
    const FloorAddr *fa = blob.buf;
    Py_ssize_t n = blob.len / (Py_ssize_t)sizeof(FloorAddr);
    struct mmsghdr msgs[BATCH];
    struct iovec iov = {data.buf, (size_t)data.len};
    long total = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t off = 0; off < n; off += BATCH) {
        int k = (int)(n - off < BATCH ? n - off : BATCH);
        for (int i = 0; i < k; i++) {
            memset(&msgs[i], 0, sizeof(msgs[i]));
            msgs[i].msg_hdr.msg_name = (void *)&fa[off + i].sa;
            msgs[i].msg_hdr.msg_namelen = fa[off + i].len;
            msgs[i].msg_hdr.msg_iov = &iov;
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int done = 0;
        while (done < k) {
            int r = sendmmsg(fd, msgs + done, (unsigned)(k - done), 0);
            if (r < 0) {
                if (errno != EINTR) done++;
                continue;
            }
            total += r;
            done += r;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&blob);
    return PyLong_FromLong(total);
}

static PyObject *gcm_install(PyObject *Py_UNUSED(module), PyObject *args) {
    unsigned long long f[7];
    if (!PyArg_ParseTuple(args, "KKKKKKK", &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6]))
        return NULL;
    for (int i = 0; i < 7; i++)
        if (f[i] == 0) {
            PyErr_SetString(PyExc_ValueError, "gcm_install needs all seven functions");
            return NULL;
        }
    if (!gcm_available()) { /* once: viewers made since may already use them */
        gcm_fns.ctx_free = (void (*)(void *))(uintptr_t)f[1];
        gcm_fns.cipher = (const void *(*)(void))(uintptr_t)f[2];
        gcm_fns.init = (int (*)(void *, const void *, void *, const unsigned char *,
                                const unsigned char *, int))(uintptr_t)f[3];
        gcm_fns.update = (int (*)(void *, unsigned char *, int *, const unsigned char *,
                                  int))(uintptr_t)f[4];
        gcm_fns.final = (int (*)(void *, unsigned char *, int *))(uintptr_t)f[5];
        gcm_fns.ctrl = (int (*)(void *, int, int, void *))(uintptr_t)f[6];
        gcm_fns.ctx_new = (void *(*)(void))(uintptr_t)f[0]; /* last: gcm_available() */
    }
    Py_RETURN_NONE;
}

static PyObject *gcm_installed(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(arg)) {
    return PyBool_FromLong(gcm_available());
}

static PyMethodDef methods[] = {
    {"gcm_install", gcm_install, METH_VARARGS,
     "gcm_install(EVP_CIPHER_CTX_new, _free, EVP_aes_128_gcm, EVP_CipherInit_ex, "
     "EVP_CipherUpdate, EVP_CipherFinal_ex, EVP_CIPHER_CTX_ctrl): libcrypto's functions by "
     "address, for viewers made with a GCM session key (once; later calls are ignored)"},
    {"gcm_installed", gcm_installed, METH_NOARGS,
     "gcm_installed() -> bool: whether gcm_install ran"},
    {"floor_addrs", floor_addrs, METH_VARARGS,
     "floor_addrs([(host, port), ...]) -> bytes: resolved addresses for floor_send (bench)"},
    {"floor_send", floor_send, METH_VARARGS,
     "floor_send(fd, data, addrs) -> sent: the kernel floor of the fan-out (bench)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rtp._fanout",
    .m_doc = "The per-viewer RTP hot path in C: fan-out tables served by worker threads.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
    if (PyType_Ready(&EngineType) < 0 || PyType_Ready(&TableType) < 0 ||
        PyType_Ready(&ViewerType) < 0 || PyType_Ready(&HubType) < 0 ||
        PyType_Ready(&GroupType) < 0 || PyType_Ready(&SinkType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&EngineType);
    Py_INCREF(&TableType);
    Py_INCREF(&ViewerType);
    if (PyModule_AddObject(m, "Engine", (PyObject *)&EngineType) < 0 ||
        PyModule_AddObject(m, "Table", (PyObject *)&TableType) < 0 ||
        PyModule_AddObject(m, "Viewer", (PyObject *)&ViewerType) < 0 ||
        PyModule_AddObjectRef(m, "Sink", (PyObject *)&SinkType) < 0 ||
        PyModule_AddObjectRef(m, "Group", (PyObject *)&GroupType) < 0 ||
        PyModule_AddObjectRef(m, "Hub", (PyObject *)&HubType) < 0 ||
        PyModule_AddIntConstant(m, "MAX_SLOTS", MAX_SLOTS) < 0 ||
        PyModule_AddIntConstant(m, "MAX_PACKET", MAX_PACKET) < 0 ||
        PyModule_AddIntConstant(m, "KIND_MEDIA", K_MEDIA) < 0 ||
        PyModule_AddIntConstant(m, "KIND_RETRANSMISSION", K_RETRANSMISSION) < 0 ||
        PyModule_AddIntConstant(m, "KIND_RTX", K_RTX) < 0 ||
        PyModule_AddIntConstant(m, "FLAG_KEYFRAME", F_KEYFRAME) < 0 ||
        PyModule_AddIntConstant(m, "FLAG_VIDEO", F_VIDEO) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
