/* Sealed frames of one direction (frame-cipher.h). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "frame-cipher.h"
#include "wire.h"

/* 2^53 - 1, as transport-frames.ts: refusing beats ever reusing a nonce. */
#define MAX_SAFE_COUNTER 9007199254740991ULL
#define GCM_GET_TAG 0x10
#define GCM_SET_TAG 0x11

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
typedef int (*init_fn)(EVP_CIPHER_CTX *, const EVP_CIPHER *, void *, const unsigned char *, const unsigned char *);
typedef int (*update_fn)(EVP_CIPHER_CTX *, unsigned char *, int *, const unsigned char *, int);
typedef int (*final_fn)(EVP_CIPHER_CTX *, unsigned char *, int *);
static EVP_CIPHER_CTX *(*ctx_new)(void);
static void (*ctx_free)(EVP_CIPHER_CTX *);
static const EVP_CIPHER *aes_gcm;
static init_fn enc_init, dec_init;
static update_fn enc_update, dec_update;
static final_fn enc_final, dec_final;
static int (*ctx_ctrl)(EVP_CIPHER_CTX *, int, int, void *);

struct frame_cipher { EVP_CIPHER_CTX *ctx; uint64_t counter; };

int frame_cipher_init(void) {
  if (aes_gcm != NULL) return 0;
  ctx_new = (EVP_CIPHER_CTX *(*)(void))dlsym(RTLD_DEFAULT, "EVP_CIPHER_CTX_new");
  ctx_free = (void (*)(EVP_CIPHER_CTX *))dlsym(RTLD_DEFAULT, "EVP_CIPHER_CTX_free");
  enc_init = (init_fn)dlsym(RTLD_DEFAULT, "EVP_EncryptInit_ex");
  dec_init = (init_fn)dlsym(RTLD_DEFAULT, "EVP_DecryptInit_ex");
  enc_update = (update_fn)dlsym(RTLD_DEFAULT, "EVP_EncryptUpdate");
  dec_update = (update_fn)dlsym(RTLD_DEFAULT, "EVP_DecryptUpdate");
  enc_final = (final_fn)dlsym(RTLD_DEFAULT, "EVP_EncryptFinal_ex");
  dec_final = (final_fn)dlsym(RTLD_DEFAULT, "EVP_DecryptFinal_ex");
  ctx_ctrl = (int (*)(EVP_CIPHER_CTX *, int, int, void *))dlsym(RTLD_DEFAULT, "EVP_CIPHER_CTX_ctrl");
  const EVP_CIPHER *(*gcm)(void) = (const EVP_CIPHER *(*)(void))dlsym(RTLD_DEFAULT, "EVP_aes_256_gcm");
  if (!ctx_new || !ctx_free || !enc_init || !dec_init || !enc_update || !dec_update || !enc_final || !dec_final || !ctx_ctrl || !gcm) return -1;
  aes_gcm = gcm();
  return aes_gcm == NULL ? -1 : 0;
}

struct frame_cipher *frame_cipher_new(int seal, const uint8_t *key) {
  struct frame_cipher *f = calloc(1, sizeof *f);
  if (f == NULL) return NULL;
  f->ctx = ctx_new();
  if (f->ctx == NULL || (seal ? enc_init : dec_init)(f->ctx, aes_gcm, NULL, key, NULL) != 1) { frame_cipher_free(f); return NULL; }
  return f;
}

void frame_cipher_free(struct frame_cipher *f) {
  if (f == NULL) return;
  if (f->ctx != NULL) ctx_free(f->ctx);
  free(f);
}

size_t frame_sealed_size(size_t n) { return n + (n + MAX_FRAME_PLAINTEXT - 1) / MAX_FRAME_PLAINTEXT * (4 + FRAME_TAG); }

static void nonce_of(uint64_t counter, uint8_t nonce[12]) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(counter >> (56 - 8 * i));
}

int frame_seal(struct frame_cipher *f, const uint8_t *plain, size_t n, uint8_t *out, size_t *written) {
  size_t o = 0;
  for (size_t start = 0; start < n; start += MAX_FRAME_PLAINTEXT) {
    size_t len = n - start < MAX_FRAME_PLAINTEXT ? n - start : MAX_FRAME_PLAINTEXT;
    if (f->counter >= MAX_SAFE_COUNTER) return FRAME_NONCE_EXHAUSTED;
    uint8_t nonce[12], scratch[32];
    nonce_of(f->counter++, nonce);
    put32(out + o, (uint32_t)(len + FRAME_TAG));
    int outl, ok = enc_init(f->ctx, NULL, NULL, NULL, nonce) == 1 && enc_update(f->ctx, NULL, &outl, out + o, 4) == 1;
    ok = ok && enc_update(f->ctx, out + o + 4, &outl, plain + start, (int)len) == 1;
    ok = ok && enc_final(f->ctx, scratch, &outl) == 1;
    ok = ok && ctx_ctrl(f->ctx, GCM_GET_TAG, FRAME_TAG, out + o + 4 + len) == 1;
    if (!ok) return FRAME_FAILED;
    o += 4 + len + FRAME_TAG;
  }
  *written = o;
  return 0;
}

int frame_open(struct frame_cipher *f, const uint8_t *frame, uint32_t length, uint8_t *out) {
  if (f->counter >= MAX_SAFE_COUNTER) return -1;
  uint8_t nonce[12], tag[FRAME_TAG], scratch[32];
  nonce_of(f->counter++, nonce);
  size_t body = length - FRAME_TAG;
  /* A copy: OpenSSL is handed a tag it may treat as writable. */
  memcpy(tag, frame + 4 + body, FRAME_TAG);
  int outl, ok = dec_init(f->ctx, NULL, NULL, NULL, nonce) == 1 && dec_update(f->ctx, NULL, &outl, frame, 4) == 1;
  if (body > 0) ok = ok && dec_update(f->ctx, out, &outl, frame + 4, (int)body) == 1;
  ok = ok && ctx_ctrl(f->ctx, GCM_SET_TAG, FRAME_TAG, tag) == 1 && dec_final(f->ctx, scratch, &outl) == 1;
  return ok ? 0 : -1;
}
