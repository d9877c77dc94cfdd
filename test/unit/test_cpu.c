/* test_cpu — cpu_features against the kernel's own reading of CPUID, the
 * "flags" line of /proc/cpuinfo (the kernel also drops the AVX-512 flags
 * when it does not save their registers, as cpu.c does), and cpu_has as
 * "every bit asked for". */
#include "cpu.h"
#include "unit.h"

#include <stdlib.h>

static const struct {
    unsigned bit;
    const char *flag;
} FLAGS[] = {
    {CPU_SSSE3, "ssse3"}, {CPU_SSE41, "sse4_1"},  {CPU_SHA, "sha_ni"},          {CPU_BMI2, "bmi2"},
    {CPU_ADX, "adx"},     {CPU_AVX512F, "avx512f"}, {CPU_AVX512IFMA, "avx512ifma"},
};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])

/* kernel_flag — whether the first "flags" line lists `flag` as a word;
 * -1: no such line (not x86 Linux). */
static int kernel_flag(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return -1;
    static char line[1 << 16];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5) != 0 || !strchr(line, ':')) continue;
        found = 0;
        for (char *w = strtok(strchr(line, ':') + 1, " \t\n"); w; w = strtok(NULL, " \t\n"))
            if (strcmp(w, flag) == 0) found = 1;
    }
    fclose(f);
    return found;
}

static void test_bits_match_the_kernel(void)
{
    unsigned f = cpu_features();
#if defined(__x86_64__)
    for (size_t i = 0; i < NFLAGS; i++) {
        int k = kernel_flag(FLAGS[i].flag);
        CHECK(k >= 0);
        if (k >= 0 && k != !!(f & FLAGS[i].bit))
            fprintf(stderr, "  %s: cpu.c %d, /proc/cpuinfo %d\n", FLAGS[i].flag, !!(f & FLAGS[i].bit), k);
        CHECK(k == !!(f & FLAGS[i].bit));
    }
    printf("  this CPU:");
    for (size_t i = 0; i < NFLAGS; i++)
        if (f & FLAGS[i].bit) printf(" %s", FLAGS[i].flag);
    printf("\n");
#else
    CHECK(f == 0);
#endif
    CHECK(cpu_features() == f); /* the same answer every time */
}

static void test_has_means_every_bit(void)
{
    unsigned f = cpu_features();
    CHECK(cpu_has(0));
    CHECK(cpu_has(f));
    for (size_t i = 0; i < NFLAGS; i++) {
        CHECK(cpu_has(FLAGS[i].bit) == !!(f & FLAGS[i].bit));
        for (size_t j = 0; j < NFLAGS; j++) {
            unsigned both = FLAGS[i].bit | FLAGS[j].bit;
            CHECK(cpu_has(both) == ((f & both) == both));
        }
    }
}

UNIT_MAIN("cpu", UNIT_CASE(test_bits_match_the_kernel), UNIT_CASE(test_has_means_every_bit))
