/*
 * One direction of a direct connection's sealed frames, as transport-frames.ts writes them:
 *
 *   length (4 bytes BE: ciphertext + tag, authenticated as AAD) | AES-256-GCM ciphertext | tag (16)
 *
 * with the nonce 4 zero bytes + the frame's 64-bit BE counter, one counter per direction. The
 * cipher is OpenSSL's, the one Node.js carries and exports: its EVP functions are looked up in
 * the running process (dlsym), as gcm.ts does through koffi, so the library links only libc.
 */
#ifndef WEFT_FRAME_CIPHER_H
#define WEFT_FRAME_CIPHER_H
#include <stddef.h>
#include <stdint.h>

/* Internal to the library: only weft_pl_* is its interface. */
#pragma GCC visibility push(hidden)

#define FRAME_TAG 16
#define MAX_FRAME_PLAINTEXT (128 * 1024)
#define MAX_FRAME_BODY (MAX_FRAME_PLAINTEXT + FRAME_TAG)

enum { FRAME_NONCE_EXHAUSTED = 1, FRAME_FAILED = 2 };

struct frame_cipher;

/* 0 when OpenSSL's EVP functions are in this process. */
int frame_cipher_init(void);

/* The sealing (seal = 1) or opening side of one direction under a 32-byte key; NULL when out of memory or OpenSSL refused. */
struct frame_cipher *frame_cipher_new(int seal, const uint8_t *key);
void frame_cipher_free(struct frame_cipher *f);

/* The bytes of the frames that seal n bytes (split at MAX_FRAME_PLAINTEXT). */
size_t frame_sealed_size(size_t n);

/* Seals n bytes into frames at out (frame_sealed_size(n) bytes); 0, FRAME_NONCE_EXHAUSTED or FRAME_FAILED. */
int frame_seal(struct frame_cipher *f, const uint8_t *plain, size_t n, uint8_t *out, size_t *written);

/*
 * Opens one frame (its 4-byte header, body and tag; `length` is the header's value, which the
 * caller checked against FRAME_TAG..MAX_FRAME_BODY) into out (length - FRAME_TAG bytes). 0, or
 * -1 when it fails authentication: nothing in out may then be used.
 */
int frame_open(struct frame_cipher *f, const uint8_t *frame, uint32_t length, uint8_t *out);

#pragma GCC visibility pop

#endif
