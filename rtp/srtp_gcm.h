/* SRTP AEAD_AES_128_GCM (RFC 7714) for the fan-out's outbound RTP, without libsrtp's per-packet
 * machinery — included by _fanout.c only.
 *
 * libsrtp's srtp_protect spent ~0.8 µs per 1.2 kB packet beyond the AES-GCM itself (stream
 * lookup, key-limit accounting, its cipher abstraction, OpenSSL's context re-initialisation);
 * here a viewer keeps one EVP_CIPHER_CTX keyed once with its session key, and a packet costs
 * one IV set, the AAD, the in-place encryption and the tag (issue 18: the per-packet cost).
 *
 * The functions are libcrypto's (OpenSSL 1.1/3 EVP ABI), by address: rtp/srtp.py finds them in
 * the libcrypto Python's own ssl module loaded and hands them over once (gcm_install); without
 * them every viewer stays on libsrtp. The session key and salt are derived in Python
 * (rtp.srtp.gcm_session_keys, RFC 3711's KDF as libsrtp runs it for GCM).
 *
 * The packet index follows libsrtp exactly (srtp_rdbx_estimate_index / srtp_index_guess /
 * srtp_rdbx_add_index with a 128-packet window and allow_repeat_tx): a stream starts at index 0,
 * a packet ahead moves it forward (the ROC carries over a sequence wrap), a packet up to 127
 * behind (a NACK resend) is protected again with its own index, anything older is refused.
 * tests/unit/rtp/test_srtp_gcm.py compares every byte with libsrtp's output.
 *
 * Thread use: a viewer's state (context, streams) is only touched by the viewer's worker, as
 * its libsrtp session was; gcm_install runs once under the GIL before any viewer has a context.
 */

#ifndef TRIO_CORE_SRTP_GCM_H
#define TRIO_CORE_SRTP_GCM_H

#include <stdint.h>
#include <string.h>

#define GCM_TAG 16
#define GCM_SALT 12
#define GCM_KEY 16
#define GCM_STREAMS 8         /* SSRCs per viewer: media + RTX of up to 4 tracks */
#define GCM_WINDOW 128        /* libsrtp's default replay window (bits) */
#define EVP_CTRL_GCM_GET_TAG_ 0x10

typedef struct {
    void *(*ctx_new)(void);
    void (*ctx_free)(void *);
    const void *(*cipher)(void); /* EVP_aes_128_gcm */
    int (*init)(void *, const void *, void *, const unsigned char *, const unsigned char *, int);
    int (*update)(void *, unsigned char *, int *, const unsigned char *, int);
    int (*final)(void *, unsigned char *, int *);
    int (*ctrl)(void *, int, int, void *);
} GcmFunctions;

static GcmFunctions gcm_fns; /* all NULL until gcm_install */

typedef struct {
    uint32_t ssrc;
    int used;
    uint64_t index; /* 48-bit packet index: ROC << 16 | highest sequence number sent */
} GcmStream;

typedef struct {
    void *ctx; /* EVP_CIPHER_CTX keyed with the session key */
    unsigned char salt[GCM_SALT];
    GcmStream streams[GCM_STREAMS];
} Gcm;

static int gcm_available(void) { return gcm_fns.ctx_new != NULL; }

/* a context for one viewer; NULL when libcrypto refuses (the viewer then uses libsrtp) */
static Gcm *gcm_new(const unsigned char key[GCM_KEY], const unsigned char salt[GCM_SALT]) {
    if (!gcm_available()) return NULL;
    Gcm *g = calloc(1, sizeof(Gcm));
    if (g == NULL) return NULL;
    g->ctx = gcm_fns.ctx_new();
    if (g->ctx == NULL || gcm_fns.init(g->ctx, gcm_fns.cipher(), NULL, key, NULL, 1) != 1) {
        if (g->ctx != NULL) gcm_fns.ctx_free(g->ctx);
        free(g);
        return NULL;
    }
    memcpy(g->salt, salt, GCM_SALT);
    return g;
}

static void gcm_free(Gcm *g) {
    if (g == NULL) return;
    gcm_fns.ctx_free(g->ctx);
    free(g);
}

static GcmStream *gcm_stream(Gcm *g, uint32_t ssrc, int create) {
    for (int i = 0; i < GCM_STREAMS; i++)
        if (g->streams[i].used && g->streams[i].ssrc == ssrc) return &g->streams[i];
    if (!create) return NULL;
    for (int i = 0; i < GCM_STREAMS; i++)
        if (!g->streams[i].used) {
            g->streams[i].used = 1;
            g->streams[i].ssrc = ssrc;
            g->streams[i].index = 0;
            return &g->streams[i];
        }
    return NULL;
}

/* libsrtp's srtp_rdbx_estimate_index: the packet index of sequence number seq, and how far
 * ahead of the stream's highest index it is */
static int32_t gcm_estimate(uint64_t local, uint16_t seq, uint64_t *guess) {
    uint32_t roc = (uint32_t)(local >> 16);
    uint16_t lseq = (uint16_t)local;
    if (local <= 0x8000) { /* the first half of ROC 0: no guessing */
        *guess = seq;
        return (int32_t)seq - (int32_t)lseq;
    }
    uint32_t guess_roc;
    int32_t difference;
    if (lseq < 0x8000) {
        if ((int32_t)seq - (int32_t)lseq > 0x8000) {
            guess_roc = roc - 1;
            difference = (int32_t)seq - (int32_t)lseq - 0x10000;
        } else {
            guess_roc = roc;
            difference = (int32_t)seq - (int32_t)lseq;
        }
    } else {
        if ((int32_t)lseq - 0x8000 > (int32_t)seq) {
            guess_roc = roc + 1;
            difference = (int32_t)seq - (int32_t)lseq + 0x10000;
        } else {
            guess_roc = roc;
            difference = (int32_t)seq - (int32_t)lseq;
        }
    }
    *guess = ((uint64_t)guess_roc << 16) | seq;
    return difference;
}

/* protect the RTP packet b[0..*len) in place (room for the tag after it): 0, or -1 refused */
static int gcm_protect(Gcm *g, unsigned char *b, int *len) {
    int n = *len;
    if (n < 12 || (b[0] >> 6) != 2) return -1;
    int hlen = 12 + 4 * (b[0] & 0x0f);
    if (b[0] & 0x10) {
        if (n < hlen + 4) return -1;
        hlen += 4 + 4 * ((b[hlen + 2] << 8) | b[hlen + 3]);
    }
    if (n < hlen) return -1;
    uint16_t seq = (uint16_t)((b[2] << 8) | b[3]);
    uint32_t ssrc = ((uint32_t)b[8] << 24) | ((uint32_t)b[9] << 16) | ((uint32_t)b[10] << 8) | b[11];
    GcmStream *st = gcm_stream(g, ssrc, 1);
    if (st == NULL) return -1;
    uint64_t index;
    int32_t delta = gcm_estimate(st->index, seq, &index);
    if (delta <= -GCM_WINDOW) return -1; /* libsrtp: srtp_err_status_replay_old */
    if (delta > 0) st->index = index;
    uint32_t roc = (uint32_t)(index >> 16);
    unsigned char iv[GCM_SALT] = {0, 0,
                                  b[8], b[9], b[10], b[11],
                                  (unsigned char)(roc >> 24), (unsigned char)(roc >> 16),
                                  (unsigned char)(roc >> 8), (unsigned char)roc,
                                  b[2], b[3]};
    for (int i = 0; i < GCM_SALT; i++) iv[i] ^= g->salt[i];
    int out = 0;
    if (gcm_fns.init(g->ctx, NULL, NULL, NULL, iv, 1) != 1) return -1;
    if (gcm_fns.update(g->ctx, NULL, &out, b, hlen) != 1) return -1; /* the header: AAD */
    if (n > hlen && gcm_fns.update(g->ctx, b + hlen, &out, b + hlen, n - hlen) != 1) return -1;
    if (gcm_fns.final(g->ctx, b + n, &out) != 1) return -1; /* GCM writes nothing here */
    if (gcm_fns.ctrl(g->ctx, EVP_CTRL_GCM_GET_TAG_, GCM_TAG, b + n) != 1) return -1;
    *len = n + GCM_TAG;
    return 0;
}

/* the rollover counter of stream ssrc (libsrtp's srtp_get_stream_roc), or -1 without one */
static int64_t gcm_roc(Gcm *g, uint32_t ssrc) {
    GcmStream *st = gcm_stream(g, ssrc, 0);
    return st == NULL ? -1 : (int64_t)(st->index >> 16);
}

#endif
