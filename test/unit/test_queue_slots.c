/* Unit tests of the queue's destination slots (MRS_DELIVERY_DOMAIN_CONCURRENCY):
 * taking and giving slots, parking a claimed message until a slot is given
 * back (oldest first, every one once none is held), parking when a slot
 * came free meanwhile, a parked message's latest time, and the operator's
 * hold and delete of a parked message.  Runs the real
 * schedule on a spool in a temporary folder; alarm() bounds a claim that
 * would block. */
#include "config.h"
#include "crypto.h"
#include "queue.h"
#include "unit.h"
#include "util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KEY 0x1234u
#define OTHER 0x5678u
#define FAR_MS (3600 * 1000)

static bool ready;
static char dir[] = "/tmp/mrs-unit-slots-XXXXXX";

static void setup(void)
{
    char err[256];
    if (ready)
        return;
    CHECK(mkdtemp(dir) != NULL);
    setenv("MRS_HOSTNAME", "mrs.test", 1);
    setenv("MRS_SPOOL_DIR", dir, 1);
    setenv("MRS_DELIVERY_THREADS", "4", 1);
    CHECK(config_load(err, sizeof err) == 0);
    CHECK(crypto_init() == 0);
    CHECK(queue_init(err, sizeof err) == 0);
    ready = true;
}

/* commit — a new message in the spool, due at once; its id into id. */
static void commit(char id[QUEUE_ID_BYTES])
{
    const char *rcpts[] = {"x@tarpit.example"};
    struct queue_envelope env = {.user = "u", .client = "127.0.0.1", .helo = "h", .from = "a@b.example",
                                 .rcpts = rcpts, .rcpt_count = 1, .received_ms = util_wall_ms()};
    queue_new_id(id);
    usleep(2000); /* ids are time-ordered: the next one sorts after */
    struct queue_msg *m = queue_open(id, &env);
    CHECK(m != NULL);
    if (m) {
        CHECK(queue_write(m, "Subject: x\r\n\r\nbody\r\n", 20) == 0);
        CHECK(queue_commit(m) == 0);
    }
}

/* claim — the next due item, which must be `want`. */
static struct queue_item *claim(const char *want)
{
    alarm(10); /* a claim that blocks is a failure: SIGALRM ends the test */
    struct queue_item *it = queue_claim();
    alarm(0);
    CHECK(it != NULL);
    if (it)
        CHECK_STR(queue_item_id(it), want);
    return it;
}

static void test_take_and_give(void)
{
    setup();
    CHECK(queue_slot_take(KEY, 2));
    CHECK(queue_slot_take(KEY, 2));
    CHECK(!queue_slot_take(KEY, 2));   /* the limit */
    CHECK(queue_slot_take(OTHER, 2));  /* another destination has its own */
    queue_slot_give(OTHER);
    queue_slot_give(KEY);
    CHECK(queue_slot_take(KEY, 2));    /* one came free */
    CHECK(!queue_slot_take(KEY, 2));
    queue_slot_give(KEY);
    queue_slot_give(KEY);
    queue_slot_give(KEY);              /* one too many: ignored */
    CHECK(queue_slot_take(KEY, 1));
    CHECK(!queue_slot_take(KEY, 1));
    queue_slot_give(KEY);
}

static void test_parked_until_a_slot_is_given_back(void)
{
    char a[QUEUE_ID_BYTES], b[QUEUE_ID_BYTES], c[QUEUE_ID_BYTES], d[QUEUE_ID_BYTES];
    setup();
    CHECK(queue_slot_take(KEY, 2));
    CHECK(queue_slot_take(KEY, 2));
    commit(a);
    commit(b);
    struct queue_item *ia = claim(a), *ib = claim(b);
    queue_park(ia, KEY, 2, util_wall_ms() + FAR_MS);
    queue_park(ib, KEY, 2, util_wall_ms() + FAR_MS);
    commit(c);
    struct queue_item *ic = claim(c); /* a and b are not due: parked */
    queue_park(ic, KEY, 2, util_wall_ms() + FAR_MS);

    queue_slot_give(KEY);             /* 1 held: the oldest waiter only */
    ia = claim(a);
    commit(d);
    struct queue_item *id = claim(d); /* b would come first were it due */
    CHECK(queue_slot_take(KEY, 2));   /* a's turn: 2 held again */
    queue_slot_give(KEY);             /* 1 held: b */
    ib = claim(b);
    queue_slot_give(KEY);             /* none held: every waiter (c) */
    ic = claim(c);

    /* parking when a slot is free by now: due at once */
    queue_park(id, KEY, 2, util_wall_ms() + FAR_MS);
    id = claim(d);
    queue_done(ia);
    queue_done(ib);
    queue_done(ic);
    queue_done(id);
}

static void test_parked_until_its_latest_time(void)
{
    char a[QUEUE_ID_BYTES];
    setup();
    CHECK(queue_slot_take(KEY, 1));
    commit(a);
    struct queue_item *ia = claim(a);
    queue_park(ia, KEY, 1, util_wall_ms() + 50);
    ia = claim(a);                    /* back after 50 ms with the slot still held */
    queue_slot_give(KEY);             /* it left the waiting list: nothing to wake */
    CHECK(queue_slot_take(KEY, 1));
    queue_slot_give(KEY);
    queue_done(ia);
}

/* The operator's commands on a parked message: a hold stays a hold when a
 * slot is given back (it leaves the waiting list), a delete frees it
 * without a dangling entry in the list (ASan would see one). */
static void test_operator_hold_and_delete_of_a_parked_message(void)
{
    char a[QUEUE_ID_BYTES], b[QUEUE_ID_BYTES], c[QUEUE_ID_BYTES];
    FILE *out = fopen("/dev/null", "w");
    setup();
    CHECK(out != NULL);
    CHECK(queue_slot_take(KEY, 1));
    commit(a);
    commit(b);
    struct queue_item *ia = claim(a), *ib = claim(b);
    queue_park(ia, KEY, 1, util_wall_ms() + FAR_MS);
    queue_park(ib, KEY, 1, util_wall_ms() + FAR_MS);
    CHECK(queue_control(QUEUE_CTL_HOLD, a, out) == QUEUE_CTL_OK);
    CHECK(queue_control(QUEUE_CTL_DELETE, b, out) == QUEUE_CTL_OK);
    queue_slot_give(KEY);             /* nobody to wake: a is held, b is gone */
    commit(c);
    struct queue_item *ic = claim(c); /* a is not due */
    CHECK(queue_control(QUEUE_CTL_RELEASE, a, out) == QUEUE_CTL_OK);
    ia = claim(a);
    queue_done(ia);
    queue_done(ic);
    fclose(out);
}

/* cleanup — the spool folders (empty by now). */
static void test_cleanup(void)
{
    char path[sizeof dir + 64];
    static const char *const subs[] = {"queue", "tmp"};
    /* tmp/ keeps finished messages' files for reuse (queue_recycle.h) */
    snprintf(path, sizeof path, "%s/tmp", dir);
    DIR *d = opendir(path);
    CHECK(d != NULL);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        CHECK(strncmp(e->d_name, "recycle.", 8) == 0);
        snprintf(path, sizeof path, "%s/tmp/%.40s", dir, e->d_name);
        CHECK(unlink(path) == 0);
    }
    if (d)
        closedir(d);
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, subs[i]);
        CHECK(rmdir(path) == 0);
    }
    CHECK(rmdir(dir) == 0);
}

UNIT_MAIN("queue_slots", UNIT_CASE(test_take_and_give), UNIT_CASE(test_parked_until_a_slot_is_given_back),
          UNIT_CASE(test_parked_until_its_latest_time),
          UNIT_CASE(test_operator_hold_and_delete_of_a_parked_message), UNIT_CASE(test_cleanup))
