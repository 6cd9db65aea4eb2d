/* C helpers for the WebSocket codec: masking (RFC 6455 §5.3) and UTF-8
 * validation (RFC 3629), both incremental so a payload can be processed in
 * pieces as it arrives; and the opening handshake's accept value. Declared to Cython in codec.pxd (nogil). */
#ifndef ROBYN_FAST_WSUTIL_H
#define ROBYN_FAST_WSUTIL_H

#include <stddef.h>
#include <stdint.h>

/* XOR `n` bytes of `src` with the 4-byte `mask` into `dst`, starting at mask
 * byte `phase` (0..3, i.e. the payload offset modulo 4). dst may equal src.
 * Any alignment is allowed. */
void rf_mask(uint8_t *dst, const uint8_t *src, size_t n,
             const uint8_t mask[4], size_t phase);

/* UTF-8 validator states. Every other value is an "inside a sequence" state. */
#define RF_UTF8_ACCEPT 0u
#define RF_UTF8_REJECT 1u

/* Advance the validator over `n` bytes from `state`. Returns the new state:
 * RF_UTF8_ACCEPT when the bytes so far end on a character boundary,
 * RF_UTF8_REJECT as soon as a byte cannot be part of valid UTF-8 (then, if
 * `bad` is not NULL, *bad is the offset of that byte), or an intermediate
 * state when a character is still incomplete. */
uint32_t rf_utf8_step(uint32_t state, const uint8_t *s, size_t n, size_t *bad);

/* Sec-WebSocket-Accept (RFC 6455 §4.2.2 step 5.4): base64(SHA-1(key || GUID))
 * of the `n` bytes of the client's key, as the 28 ASCII characters written to
 * `out` (not NUL-terminated). */
#define RF_WS_ACCEPT_LEN 28
void rf_ws_accept(const uint8_t *key, size_t n, char out[RF_WS_ACCEPT_LEN]);

#endif
