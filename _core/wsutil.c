#include <string.h>
#include "wsutil.h"

/* The mask word for 8 payload bytes starting at mask byte `phase`. Since 8 is
 * a multiple of 4, the same word serves every 8-byte block. */
static inline uint64_t mask_word(const uint8_t mask[4], size_t phase)
{
    uint8_t m[8];
    for (int i = 0; i < 8; i++)
        m[i] = mask[(i + phase) & 3];
    uint64_t w;
    memcpy(&w, m, 8);
    return w;
}

void rf_mask(uint8_t *dst, const uint8_t *src, size_t n,
             const uint8_t mask[4], size_t phase)
{
    const uint64_t w = mask_word(mask, phase & 3);
    size_t i = 0;
#if defined(__GNUC__) || defined(__clang__)
    /* 16-byte vectors are in the base instruction set of x86-64 (SSE2) and
     * arm64 (NEON): no CPU check. Four per iteration, 64 bytes; a 64 KiB
     * payload takes about a quarter of the instructions of 8-byte words. */
    typedef uint64_t rf_v2 __attribute__((vector_size(16)));
    const rf_v2 wv = {w, w};
    for (; i + 64 <= n; i += 64) {
        rf_v2 a, b, c, d;
        memcpy(&a, src + i, 16);
        memcpy(&b, src + i + 16, 16);
        memcpy(&c, src + i + 32, 16);
        memcpy(&d, src + i + 48, 16);
        a ^= wv; b ^= wv; c ^= wv; d ^= wv;
        memcpy(dst + i, &a, 16);
        memcpy(dst + i + 16, &b, 16);
        memcpy(dst + i + 32, &c, 16);
        memcpy(dst + i + 48, &d, 16);
    }
#endif
    /* memcpy loads/stores are single unaligned moves on every target we
     * build for; four words per iteration keep the loads in flight. */
    for (; i + 32 <= n; i += 32) {
        uint64_t a, b, c, d;
        memcpy(&a, src + i, 8);
        memcpy(&b, src + i + 8, 8);
        memcpy(&c, src + i + 16, 8);
        memcpy(&d, src + i + 24, 8);
        a ^= w; b ^= w; c ^= w; d ^= w;
        memcpy(dst + i, &a, 8);
        memcpy(dst + i + 8, &b, 8);
        memcpy(dst + i + 16, &c, 8);
        memcpy(dst + i + 24, &d, 8);
    }
    for (; i + 8 <= n; i += 8) {
        uint64_t a;
        memcpy(&a, src + i, 8);
        a ^= w;
        memcpy(dst + i, &a, 8);
    }
    for (; i < n; i++)
        dst[i] = src[i] ^ mask[(i + phase) & 3];
}

/* Intermediate states: how many continuation bytes are still needed and, for
 * the second byte of some lead bytes, the narrower range that excludes
 * overlong forms, surrogates (U+D800..U+DFFF) and code points > U+10FFFF. */
enum {
    S_NEED1 = 2,    /* one more byte in 80..BF */
    S_NEED2 = 3,    /* two more, 80..BF */
    S_NEED3 = 4,    /* three more, 80..BF */
    S_E0 = 5,       /* after E0: A0..BF, then one more */
    S_ED = 6,       /* after ED: 80..9F, then one more */
    S_F0 = 7,       /* after F0: 90..BF, then two more */
    S_F4 = 8,       /* after F4: 80..8F, then two more */
};

static inline uint32_t lead(uint8_t c)
{
    if (c < 0x80) return RF_UTF8_ACCEPT;
    if (c < 0xC2) return RF_UTF8_REJECT;       /* continuation or overlong C0/C1 */
    if (c < 0xE0) return S_NEED1;
    if (c == 0xE0) return S_E0;
    if (c == 0xED) return S_ED;
    if (c < 0xF0) return S_NEED2;
    if (c == 0xF0) return S_F0;
    if (c < 0xF4) return S_NEED3;
    if (c == 0xF4) return S_F4;
    return RF_UTF8_REJECT;                     /* F5..FF */
}

uint32_t rf_utf8_step(uint32_t state, const uint8_t *s, size_t n, size_t *bad)
{
    size_t i = 0;
    if (state == RF_UTF8_REJECT) {
        if (bad) *bad = 0;
        return RF_UTF8_REJECT;
    }
    while (i < n) {
        if (state == RF_UTF8_ACCEPT) {
            /* ASCII runs, eight bytes at a time. */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & UINT64_C(0x8080808080808080)) break;
                i += 8;
            }
            while (i < n && s[i] < 0x80) i++;
            if (i == n) break;
            state = lead(s[i]);
        } else {
            uint8_t c = s[i];
            switch (state) {
            case S_NEED1: state = (c >= 0x80 && c <= 0xBF) ? RF_UTF8_ACCEPT : RF_UTF8_REJECT; break;
            case S_NEED2: state = (c >= 0x80 && c <= 0xBF) ? S_NEED1 : RF_UTF8_REJECT; break;
            case S_NEED3: state = (c >= 0x80 && c <= 0xBF) ? S_NEED2 : RF_UTF8_REJECT; break;
            case S_E0:    state = (c >= 0xA0 && c <= 0xBF) ? S_NEED1 : RF_UTF8_REJECT; break;
            case S_ED:    state = (c >= 0x80 && c <= 0x9F) ? S_NEED1 : RF_UTF8_REJECT; break;
            case S_F0:    state = (c >= 0x90 && c <= 0xBF) ? S_NEED2 : RF_UTF8_REJECT; break;
            case S_F4:    state = (c >= 0x80 && c <= 0x8F) ? S_NEED2 : RF_UTF8_REJECT; break;
            default:      state = RF_UTF8_REJECT; break;
            }
        }
        if (state == RF_UTF8_REJECT) {
            if (bad) *bad = i;
            return RF_UTF8_REJECT;
        }
        i++;
    }
    return state;
}

/* SHA-1 (FIPS 180-4 §6.1) of one message held in memory, for the opening
 * handshake's accept value only (RFC 6455 §4.2.2: SHA-1 is what the protocol
 * names; it proves nothing cryptographically here). */
#define RF_ROL32(x, n) (((x) << (n)) | ((x) >> (32 - (n))))

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
             | (uint32_t)p[4 * i + 2] << 8 | (uint32_t)p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = RF_ROL32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999u; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1u; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDCu; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6u; }
        uint32_t t = RF_ROL32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = RF_ROL32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

/* SHA-1 of the concatenation a || b (the client's key and the GUID), without
 * copying either into a joined buffer first. */
static void sha1_two(const uint8_t *a, size_t na, const uint8_t *b, size_t nb, uint8_t out[20])
{
    uint32_t h[5] = {0x67452301u, 0xEFCDAB89u, 0x98BADCFEu, 0x10325476u, 0xC3D2E1F0u};
    uint8_t block[64];
    size_t fill = 0;
    const uint64_t bits = ((uint64_t)na + (uint64_t)nb) * 8u;
    const uint8_t *parts[2] = {a, b};
    const size_t sizes[2] = {na, nb};
    for (int j = 0; j < 2; j++) {
        const uint8_t *p = parts[j];
        size_t n = sizes[j];
        while (n) {
            size_t take = 64 - fill < n ? 64 - fill : n;
            memcpy(block + fill, p, take);
            fill += take; p += take; n -= take;
            if (fill == 64) {
                sha1_block(h, block);
                fill = 0;
            }
        }
    }
    block[fill++] = 0x80;
    if (fill > 56) {
        memset(block + fill, 0, 64 - fill);
        sha1_block(h, block);
        fill = 0;
    }
    memset(block + fill, 0, 56 - fill);
    for (int i = 0; i < 8; i++)
        block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    sha1_block(h, block);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static const uint8_t RF_WS_GUID[36] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
static const char RF_B64[64] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void rf_ws_accept(const uint8_t *key, size_t n, char out[RF_WS_ACCEPT_LEN])
{
    uint8_t d[21];
    sha1_two(key, n, RF_WS_GUID, sizeof RF_WS_GUID, d);
    d[20] = 0;
    /* 20 bytes: six full groups of 3, then 2 bytes and one '=' of padding. */
    for (int i = 0, o = 0; i < 21; i += 3, o += 4) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | (uint32_t)d[i + 2];
        out[o] = RF_B64[v >> 18];
        out[o + 1] = RF_B64[(v >> 12) & 63];
        out[o + 2] = RF_B64[(v >> 6) & 63];
        out[o + 3] = i + 3 <= 20 ? RF_B64[v & 63] : '=';
    }
}
