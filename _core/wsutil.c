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
