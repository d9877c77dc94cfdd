/*
 * idna — internationalized names for SMTPUTF8 (RFC 6531): strict UTF-8
 * validation, Punycode (RFC 3492) and the A-label form of a domain, so
 * that a UTF-8 sender domain is checked and looked up in DNS as its
 * xn-- labels.
 *
 * Pure: no I/O, no allocation, no globals.  Leaf module.  This is the
 * Punycode transformation and label splitting only; it does not apply the
 * IDNA2008 mapping tables (the caller lowercases ASCII; non-ASCII case
 * folding is the sender's business, as RFC 5891 §5 leaves it).
 */
#ifndef MRS_IDNA_H
#define MRS_IDNA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDNA_LABEL_MAX_BYTES 63
#define IDNA_DOMAIN_MAX_BYTES 253

/*
 * idna_utf8_valid — whether s[0..len) is well-formed UTF-8 (RFC 3629):
 * no overlong forms, no surrogates (U+D800..U+DFFF), nothing above
 * U+10FFFF, no truncated sequence.  NUL and other C0 controls are the
 * caller's business.
 */
bool idna_utf8_valid(const char *s, size_t len);

/* idna_is_ascii — whether every byte is below 0x80. */
bool idna_is_ascii(const char *s, size_t len);

/*
 * idna_punycode_encode — the Punycode of the code points in[0..n) (RFC 3492
 * §6.3, no case annotations) into out (cap bytes, NUL-terminated).
 * Returns the length, or -1 on overflow or when it does not fit.
 */
int idna_punycode_encode(const uint32_t *in, size_t n, char *out, size_t cap);

/*
 * idna_punycode_decode — the code points of a Punycode string (RFC 3492
 * §6.2) into out (at most cap of them).  Returns how many, or -1 when the
 * input is malformed, overflows, or does not fit.
 */
int idna_punycode_decode(const char *in, size_t len, uint32_t *out, size_t cap);

/*
 * idna_to_ascii — a domain (UTF-8, dot-separated) as A-labels: each label
 * with non-ASCII characters becomes "xn--" + its Punycode; ASCII labels are
 * copied lowercased.  out gets at most cap bytes with a NUL.  Returns the
 * length, or -1 when the input is not valid UTF-8, holds a control byte
 * or a space, a label is empty or too long (63 bytes), or the result is
 * over 253 bytes or does not fit.  The caller checks the result's syntax
 * (letters, digits, hyphens).
 */
int idna_to_ascii(const char *domain, size_t len, char *out, size_t cap);

/*
 * idna_alabel — the name DNS knows for domain (its first len bytes): domain
 * itself when it is ASCII, else its A-labels in buf (cap bytes, NUL-ended);
 * NULL when it is not a valid internationalized domain name.
 */
const char *idna_alabel(const char *domain, size_t len, char *buf, size_t cap);

#endif
