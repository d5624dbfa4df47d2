/* rtp._fanout: the per-viewer hot path in C (optional accelerator of rtp/fanout.py).
 *
 * fan_out(protect, tracks, data, seq, ts) sends one producer RTP packet to every viewer
 * track in `tracks` (a list of rtp.peer.OutTrack): per track it writes the RTP header with the
 * track's payload type, sequence/timestamp offsets and SSRC (the marker bit and everything
 * after the 12-byte header are kept), protects it in place with libsrtp's srtp_protect
 * (`protect` is its address, each track's `srtp_ctx` its session), and queues it; queued
 * packets go out with one sendmmsg(2) per batch on the track's `fd` (the mux socket).
 *
 * It does exactly what rtp.fanout.fan_out_python does, counter for counter: `packets` and
 * `bytes` grow for every datagram the kernel took, `dropped` for every one it did not
 * (full socket buffer, bad address, protect failure, packet too long). It never raises for
 * a single viewer's failure; it raises only for wrong argument types or a failed attribute
 * access. No Python code runs in between (plain attribute reads of a dataclass), and the
 * GIL is held throughout: the static buffers are used by one call at a time.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

#define BATCH 64
#define MAX_PACKET 1356 /* what libsrtp protects (rtp.srtp.MAX_PROTECT_SIZE) */
#define BUF_SIZE (MAX_PACKET + 160) /* room for the SRTP trailer */

static unsigned char bufs[BATCH][BUF_SIZE];
static struct mmsghdr msgs[BATCH];
static struct iovec iovs[BATCH];
static struct sockaddr_storage addrs[BATCH];
static socklen_t addrlens[BATCH];
static PyObject *owners[BATCH];

static PyObject *s_srtp_ctx, *s_fd, *s_payload_type, *s_seq_delta, *s_ts_delta, *s_ssrc,
    *s_addr, *s_packets, *s_bytes, *s_dropped;

/* track.<name> as an unsigned 64-bit value (masked), -1 on error with an exception set */
static int get_u64(PyObject *obj, PyObject *name, unsigned long long *out) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    *out = PyLong_AsUnsignedLongLongMask(v);
    Py_DECREF(v);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) return -1;
    return 0;
}

/* track.<name> += delta */
static int add_to(PyObject *obj, PyObject *name, long long delta) {
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) return -1;
    long long cur = PyLong_AsLongLong(v);
    Py_DECREF(v);
    if (cur == -1 && PyErr_Occurred()) return -1;
    PyObject *nv = PyLong_FromLongLong(cur + delta);
    if (nv == NULL) return -1;
    int rc = PyObject_SetAttr(obj, name, nv);
    Py_DECREF(nv);
    return rc;
}

/* track.addr ("a.b.c.d" or an IPv6 literal, port, ...) -> sockaddr; 0 ok, 1 unusable
 * address, -1 error */
static int get_addr(PyObject *obj, struct sockaddr_storage *ss, socklen_t *len) {
    PyObject *addr = PyObject_GetAttr(obj, s_addr);
    if (addr == NULL) return -1;
    int rc = 1;
    if (PyTuple_Check(addr) && PyTuple_GET_SIZE(addr) >= 2) {
        PyObject *host = PyTuple_GET_ITEM(addr, 0), *port = PyTuple_GET_ITEM(addr, 1);
        if (PyUnicode_Check(host) && PyLong_Check(port)) {
            const char *h = PyUnicode_AsUTF8(host);
            long p = PyLong_AsLong(port);
            if (h == NULL || (p == -1 && PyErr_Occurred())) {
                PyErr_Clear();
            } else if (p > 0 && p < 65536) {
                memset(ss, 0, sizeof(*ss));
                struct sockaddr_in *sa = (struct sockaddr_in *)ss;
                struct sockaddr_in6 *sa6 = (struct sockaddr_in6 *)ss;
                if (inet_pton(AF_INET, h, &sa->sin_addr) == 1) {
                    sa->sin_family = AF_INET;
                    sa->sin_port = htons((unsigned short)p);
                    *len = sizeof(*sa);
                    rc = 0;
                } else if (inet_pton(AF_INET6, h, &sa6->sin6_addr) == 1) {
                    sa6->sin6_family = AF_INET6;
                    sa6->sin6_port = htons((unsigned short)p);
                    *len = sizeof(*sa6);
                    rc = 0;
                }
            }
        }
    }
    Py_DECREF(addr);
    return rc;
}

/* send msgs[0..n) on fd, then settle every owner's counters; -1 on error */
static int flush(int fd, int n) {
    int off = 0, rc = 0;
    while (off < n) {
        int sent = sendmmsg(fd, msgs + off, (unsigned int)(n - off), 0);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                for (; off < n; off++) /* the socket buffer is full: the rest is lost */
                    if (rc == 0 && add_to(owners[off], s_dropped, 1) < 0) rc = -1;
                break;
            }
            if (rc == 0 && add_to(owners[off], s_dropped, 1) < 0) rc = -1;
            off++; /* this destination failed; the others may not */
            continue;
        }
        for (int i = off; i < off + sent; i++) {
            if (rc == 0 && (add_to(owners[i], s_packets, 1) < 0 ||
                            add_to(owners[i], s_bytes, (long long)msgs[i].msg_len) < 0))
                rc = -1;
        }
        off += sent;
    }
    for (int i = 0; i < n; i++) Py_CLEAR(owners[i]);
    return rc;
}

static PyObject *fan_out(PyObject *Py_UNUSED(self), PyObject *args) {
    unsigned long long protect_addr;
    PyObject *tracks;
    Py_buffer data;
    unsigned int seq, ts;
    if (!PyArg_ParseTuple(args, "KO!y*II", &protect_addr, &PyList_Type, &tracks, &data, &seq,
                          &ts))
        return NULL;
    srtp_protect_fn protect = (srtp_protect_fn)(uintptr_t)protect_addr;
    const unsigned char *src = data.buf;
    Py_ssize_t size = data.len;
    int n = 0, batch_fd = -1, failed = 0;
    Py_ssize_t count = PyList_GET_SIZE(tracks);

    for (Py_ssize_t i = 0; i < count && !failed; i++) {
        PyObject *t = PyList_GET_ITEM(tracks, i);
        Py_INCREF(t);
        unsigned long long ctx, fd, pt, sd, tsd, ssrc;
        if (get_u64(t, s_srtp_ctx, &ctx) < 0 || get_u64(t, s_fd, &fd) < 0 ||
            get_u64(t, s_payload_type, &pt) < 0 || get_u64(t, s_seq_delta, &sd) < 0 ||
            get_u64(t, s_ts_delta, &tsd) < 0 || get_u64(t, s_ssrc, &ssrc) < 0) {
            Py_DECREF(t);
            failed = 1;
            break;
        }
        struct sockaddr_storage sa;
        socklen_t salen = 0;
        int bad = get_addr(t, &sa, &salen);
        if (bad < 0) {
            Py_DECREF(t);
            failed = 1;
            break;
        }
        if (bad || ctx == 0 || protect == NULL || size < 12 || size > MAX_PACKET ||
            (int)fd < 0) {
            if (add_to(t, s_dropped, 1) < 0) failed = 1;
            Py_DECREF(t);
            continue;
        }
        if (n > 0 && (int)fd != batch_fd) { /* another socket: send what is queued first */
            if (flush(batch_fd, n) < 0) failed = 1;
            n = 0;
            if (failed) {
                Py_DECREF(t);
                break;
            }
        }
        batch_fd = (int)fd;
        addrs[n] = sa;
        addrlens[n] = salen;
        unsigned char *b = bufs[n];
        unsigned short s16 = (unsigned short)((seq + sd) & 0xFFFF);
        unsigned int t32 = (unsigned int)((ts + tsd) & 0xFFFFFFFFu);
        unsigned int ss = (unsigned int)(ssrc & 0xFFFFFFFFu);
        b[0] = src[0];
        b[1] = (unsigned char)((src[1] & 0x80) | (pt & 0x7F));
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
        int len = (int)size;
        if (protect((void *)(uintptr_t)ctx, b, &len) != 0) {
            if (add_to(t, s_dropped, 1) < 0) failed = 1;
            Py_DECREF(t);
            continue;
        }
        iovs[n].iov_base = b;
        iovs[n].iov_len = (size_t)len;
        memset(&msgs[n], 0, sizeof(msgs[n]));
        msgs[n].msg_hdr.msg_name = &addrs[n];
        msgs[n].msg_hdr.msg_namelen = addrlens[n];
        msgs[n].msg_hdr.msg_iov = &iovs[n];
        msgs[n].msg_hdr.msg_iovlen = 1;
        owners[n] = t; /* the reference taken above */
        n++;
        if (n == BATCH) {
            if (flush(batch_fd, n) < 0) failed = 1;
            n = 0;
        }
    }
    if (n > 0) { /* what is queued still goes out, even after a failed attribute access */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (flush(batch_fd, n) < 0) failed = 1;
        if (type != NULL) {
            PyErr_Clear();
            PyErr_Restore(type, value, tb);
        }
    }
    PyBuffer_Release(&data);
    if (failed) return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"fan_out", fan_out, METH_VARARGS,
     "fan_out(protect, tracks, data, seq, ts): rewrite, protect and send one RTP packet to "
     "every track (see rtp/fanout.py)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "rtp._fanout",
    .m_doc = "The per-viewer RTP hot path in C.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__fanout(void) {
#define INTERN(var, text) \
    if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(s_srtp_ctx, "srtp_ctx");
    INTERN(s_fd, "fd");
    INTERN(s_payload_type, "payload_type");
    INTERN(s_seq_delta, "seq_delta");
    INTERN(s_ts_delta, "ts_delta");
    INTERN(s_ssrc, "ssrc");
    INTERN(s_addr, "addr");
    INTERN(s_packets, "packets");
    INTERN(s_bytes, "bytes");
    INTERN(s_dropped, "dropped");
#undef INTERN
    return PyModule_Create(&module);
}
