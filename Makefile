# Driven by build.sh, which supplies CC, DEPS (prefix of the pinned
# libraries) and BUILD (output folder).  Every src/*.c is a module; main.c is
# left out of the library that unit tests and fuzzers link against.

BUILD ?= build
CC ?= musl-gcc
DEPS ?= .deps/musl
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wvla -Wstrict-prototypes \
        -Wmissing-prototypes -Wno-unused-parameter
CPPFLAGS := -D_GNU_SOURCE -Isrc -I$(DEPS)/include \
            -DMBEDTLS_CONFIG_FILE='"$(CURDIR)/vendor/mbedtls_config.h"' \
            -DMRS_VERSION='"$(VERSION)"' -DMRS_GIT_REV='"$(GIT_REV)"'
CPPFLAGS += $(EXTRA_CPPFLAGS)
ifeq ($(SANITIZE),1)
CFLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
          -fno-sanitize-recover=undefined $(WARN)
LDFLAGS := -fsanitize=address,undefined
else
# _FORTIFY_SOURCE is left out: musl has no fortified headers, so it would
# only pretend.  The stack protector and static-pie (ASLR) do work.
CFLAGS := -std=c11 -O2 -g -fPIE -fstack-protector-strong -fno-strict-aliasing $(WARN)
LDFLAGS := $(LDFLAGS_EXTRA) -Wl,-z,relro,-z,now,-z,noexecstack
endif
# mbedTLS is built with our X25519 driver (src/psa_sodium.h), which lives in
# libmrs.a and is called only from libmbedcrypto.a, read after it: ask for it.
LDFLAGS += -Wl,--undefined=psa_sodium_transparent_generate_key
# The RSA private operation (src/rsa_mont.h): mbedTLS refers to it weakly,
# so without this it would silently keep its own, slower code.
LDFLAGS += -Wl,--undefined=rsa_mont_private
LIBS := $(DEPS)/lib/libmbedtls.a $(DEPS)/lib/libmbedx509.a $(DEPS)/lib/libmbedcrypto.a \
        $(DEPS)/lib/libsodium.a -lpthread

SRCS := $(wildcard src/*.c)
OBJS := $(SRCS:src/%.c=$(BUILD)/obj/%.o)
LIBOBJS := $(filter-out $(BUILD)/obj/main.o,$(OBJS))
UNIT_SRCS := $(wildcard test/unit/test_*.c)
UNIT_BINS := $(UNIT_SRCS:test/unit/%.c=$(BUILD)/unit/%)
TOOL_SRCS := $(wildcard test/tools/*.c)
TOOL_BINS := $(TOOL_SRCS:test/tools/%.c=$(BUILD)/tools/%)

.PHONY: all
all: $(BUILD)/mrs $(UNIT_BINS) $(TOOL_BINS)

$(BUILD)/obj/%.o: src/%.c | $(BUILD)/obj
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libmrs.a: $(LIBOBJS)
	rm -f $@ && ar rcs $@ $^

# build/mrs is stripped; build/mrs.debug keeps the symbols for profilers.
$(BUILD)/mrs: $(BUILD)/mrs.debug
	strip -o $@ $<

$(BUILD)/mrs.debug: $(BUILD)/obj/main.o $(BUILD)/libmrs.a
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/unit/%: test/unit/%.c test/unit/unit.h $(BUILD)/libmrs.a | $(BUILD)/unit
	$(CC) $(CPPFLAGS) -Itest/unit $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmrs.a $(LIBS)

$(BUILD)/tools/%: test/tools/%.c $(BUILD)/libmrs.a | $(BUILD)/tools
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libmrs.a $(LIBS)

$(BUILD)/obj $(BUILD)/unit $(BUILD)/tools:
	mkdir -p $@

-include $(OBJS:.o=.d)
