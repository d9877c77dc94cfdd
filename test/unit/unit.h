/*
 * unit.h — a tiny unit-test runner for pure modules.
 *
 * A test file defines `static void test_x(void)` functions and lists them in
 * UNIT_MAIN(...).  CHECK records a failure and goes on; each test prints
 * "PASS name" or "FAIL name" and the program ends with the line
 * "unit: N passed, N failed" that test/run-all.sh adds up.
 */
#ifndef MRS_UNIT_H
#define MRS_UNIT_H

#include <stdio.h>
#include <string.h>

static int unit_failed_checks;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond); \
            unit_failed_checks++;                                                    \
        }                                                                            \
    } while (0)

#define CHECK_STR(a, b)                                                              \
    do {                                                                             \
        const char *a_ = (a), *b_ = (b);                                             \
        if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                     \
            fprintf(stderr, "  %s:%d: '%s' != '%s'\n", __FILE__, __LINE__,           \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                         \
            unit_failed_checks++;                                                    \
        }                                                                            \
    } while (0)

typedef void (*unit_fn)(void);
struct unit_case {
    const char *name;
    unit_fn fn;
};

#define UNIT_CASE(fn) {#fn, fn}

static inline int unit_run(const char *file, const struct unit_case *cases, size_t n)
{
    int passed = 0, failed = 0;
    for (size_t i = 0; i < n; i++) {
        int before = unit_failed_checks;
        cases[i].fn();
        if (unit_failed_checks == before) {
            printf("PASS %s/%s\n", file, cases[i].name);
            passed++;
        } else {
            printf("FAIL %s/%s\n", file, cases[i].name);
            failed++;
        }
    }
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

#define UNIT_MAIN(name, ...)                                                     \
    int main(void)                                                               \
    {                                                                            \
        static const struct unit_case cases[] = {__VA_ARGS__};                   \
        return unit_run(name, cases, sizeof cases / sizeof cases[0]);            \
    }

#endif
