/* test_cpu — cpu_features against the kernel's own reading of CPUID, the
 * "flags" line of /proc/cpuinfo (the kernel also drops the AVX-512 flags
 * when it does not save their registers, as cpu.c does), the bits that
 * imply others, and cpu_has as "every bit asked for".
 *
 * The kernel comparison assumes CPUID is not emulated: under valgrind or
 * qemu-user, or with clearcpuid= on the kernel's command line, the two
 * readings differ and this test says so.  Where /proc/cpuinfo has no flags
 * line (not x86 Linux, /proc not mounted) it compares nothing and says
 * that. */
#include "cpu.h"
#include "unit.h"

static const struct {
    unsigned bit;
    const char *flag;
} FLAGS[] = {
    {CPU_SSSE3, "ssse3"}, {CPU_SSE41, "sse4_1"},    {CPU_SHA, "sha_ni"},          {CPU_BMI2, "bmi2"},
    {CPU_ADX, "adx"},     {CPU_AVX512F, "avx512f"}, {CPU_AVX512IFMA, "avx512ifma"},
};
#define NFLAGS (sizeof FLAGS / sizeof FLAGS[0])

#if defined(__x86_64__)
/* kernel_flags — the first "flags" line of /proc/cpuinfo into line;
 * false: there is none. */
static bool kernel_flags(char *line, size_t size)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    bool found = false;
    while (!found && fgets(line, (int)size, f))
        found = strncmp(line, "flags", 5) == 0 && strchr(line, ':');
    fclose(f);
    return found;
}

/* has_word — whether the list after the ':' holds `word` as a whole word. */
static bool has_word(const char *line, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = strchr(line, ':') + 1; (p = strstr(p, word)) != NULL; p += n)
        if (p[-1] == ' ' && (p[n] == ' ' || p[n] == '\n' || p[n] == '\0')) return true;
    return false;
}
#endif

static void test_bits_match_the_kernel(void)
{
    unsigned f = cpu_features();
    CHECK(cpu_features() == f); /* the same answer every time */
#if defined(__x86_64__)
    static char line[1 << 16];
    if (!kernel_flags(line, sizeof line)) {
        printf("  (no flags line in /proc/cpuinfo: nothing to compare)\n");
        return;
    }
    for (size_t i = 0; i < NFLAGS; i++) {
        bool k = has_word(line, FLAGS[i].flag), c = (f & FLAGS[i].bit) != 0;
        if (k != c) fprintf(stderr, "  %s: cpu.c %d, /proc/cpuinfo %d\n", FLAGS[i].flag, c, k);
        CHECK(k == c);
    }
    printf("  this CPU:");
    for (size_t i = 0; i < NFLAGS; i++)
        if (f & FLAGS[i].bit) printf(" %s", FLAGS[i].flag);
    printf("\n");
#else
    CHECK(f == 0);
#endif
}

static void test_implied_bits(void)
{
    unsigned f = cpu_features();
    /* every CPU with AVX-512 IFMA has AVX-512 F, and every one with SHA,
     * AVX-512 or ADX has SSSE3 and SSE4.1 */
    if (f & CPU_AVX512IFMA) CHECK(f & CPU_AVX512F);
    if (f & (CPU_SHA | CPU_AVX512F | CPU_ADX)) CHECK(cpu_has(CPU_SSSE3 | CPU_SSE41));
}

static void test_has_means_every_bit(void)
{
    unsigned f = cpu_features();
    CHECK(cpu_has(0));
    CHECK(cpu_has(f));
    for (size_t i = 0; i < NFLAGS; i++) {
        CHECK(cpu_has(FLAGS[i].bit) == ((f & FLAGS[i].bit) != 0));
        for (size_t j = 0; j < NFLAGS; j++) {
            unsigned both = FLAGS[i].bit | FLAGS[j].bit;
            CHECK(cpu_has(both) == ((f & both) == both));
        }
    }
}

UNIT_MAIN("cpu", UNIT_CASE(test_bits_match_the_kernel), UNIT_CASE(test_implied_bits),
          UNIT_CASE(test_has_means_every_bit))
