/*
 * mta_sts_cache — the MTA-STS policy of a recipient domain (RFC 8461 §3,
 * §5.1): discovered through the `_mta-sts` TXT record, fetched over HTTPS
 * (certificate verified against MRS_OUTBOUND_CA_FILE for
 * mta-sts.<domain>), and cached in memory and on disk in
 * MRS_SPOOL_DIR/mta-sts/<domain> (docs/spool.md) for the policy's max_age.
 *
 * Rules: a TXT id equal to the cached one and a policy not expired → the
 * cached policy; another id, or an expired policy → fetched again; a fetch
 * that fails keeps a cached policy that has not expired (else: no policy)
 * and is not tried again for MTA_STS_RETRY_AFTER_MS for the same id; no
 * TXT record (NXDOMAIN, NODATA, none or several STSv1 records) and a
 * temporary DNS failure (SERVFAIL, timeout) alike → the cached policy
 * while it lasts, else no policy: a domain that never published one is
 * never held up by its DNS (RFC 8461 §3.3 and §5.1).
 *
 * Fetches of one domain are serialized (a stripe lock by domain hash):
 * a hundred messages to one domain fetch its policy once.  Every wait ends
 * by the caller's deadline or MTA_STS_FETCH_MAX_MS.
 *
 * Calls mta_sts, dns, conn, config, log, util.  Thread-safe.
 */
#ifndef MRS_MTA_STS_CACHE_H
#define MRS_MTA_STS_CACHE_H

#include "mta_sts.h"

#include <stdbool.h>
#include <stdint.h>

#define MTA_STS_FETCH_MAX_MS 30000        /* one policy fetch, at most (and MRS_DELIVERY_COMMAND_TIMEOUT) */
#define MTA_STS_RETRY_AFTER_MS 60000      /* a failed fetch of one id is not repeated sooner */
#define MTA_STS_CACHE_ENTRIES 512         /* domains kept in memory (the disk keeps all) */
#define MTA_STS_NOTE_MAX_BYTES 640

struct mta_sts_result {
    bool have;                            /* a policy applies */
    struct mta_sts_policy policy;
    char id[MTA_STS_ID_MAX_BYTES + 1];
    const char *source;                   /* "fetched", "cached", "cached (refresh failed)", or "none" */
    char note[MTA_STS_NOTE_MAX_BYTES];    /* what happened, for the log line */
};

/*
 * mta_sts_cache_lookup — the policy for mail to domain, fetching it when
 * needed (see the top); waits end by deadline_ms (util_now_ms clock, 0 =
 * none).  out is large (about 4 KiB): put it on the heap.
 */
void mta_sts_cache_lookup(const char *domain, int64_t deadline_ms, struct mta_sts_result *out);

#endif
