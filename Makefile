# smban — build, test, benchmark and demo.
#
#   make demo    classify the bundled sample log: the story's MTA spared, a brute forcer caught
#   make test    install what is missing (Debian packages), build, run the C and pytest suites
#   make asan    the same suites under AddressSanitizer and UndefinedBehaviorSanitizer
#   make bench   the benchmark table against fail2ban, measured in one run

SHELL := /bin/bash

# Everything the project needs to build, test and benchmark, from Debian's archive.
DEB_PKGS := build-essential pkg-config python3 python3-dev python3-setuptools \
            python3-pytest python3-hypothesis fail2ban libpcre2-dev libiptc-dev \
            iptables iproute2 gcc

# Build and test against the interpreter fail2ban runs on (the #! line of
# fail2ban-server), never whatever python3 comes first on PATH.
F2B_SERVER = $(shell command -v fail2ban-server 2>/dev/null || echo /usr/bin/fail2ban-server)
PY = $(or $(shell sed -n '1s/^\#! *\([^ ]*\).*/\1/p' $(F2B_SERVER) 2>/dev/null),/usr/bin/python3)

CC ?= gcc
CORE_SRC := ext/frame.c ext/session.c ext/classify.c
CORE_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g $(shell pkg-config --cflags libpcre2-8 2>/dev/null)
CORE_LIBS := $(shell pkg-config --libs libpcre2-8 2>/dev/null)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
PYTEST_ARGS ?=

.PHONY: deps build ctest test asan bench demo clean

deps:
	@missing=$$(for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" != 0 ]; then \
	        echo "make deps: missing Debian packages:" $$missing "- run 'make deps' as root" >&2; exit 1; fi; \
	    echo "make deps: installing" $$missing; \
	    guard=; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; rc=$$?; \
	    [ -z "$$guard" ] || rm -f /usr/sbin/policy-rc.d; \
	    exit $$rc; \
	fi

build:
	$(PY) setup.py -q build_ext --inplace --force

build/test_core: ext/test/test_core.c $(CORE_SRC) ext/smban.h ext/rules.def
	@mkdir -p build
	$(CC) $(CORE_CFLAGS) $(EXTRA_CFLAGS) -o $@ ext/test/test_core.c $(CORE_SRC) $(CORE_LIBS)

ctest: build/test_core
	build/test_core

test: deps build ctest
	$(PY) -m pytest -q $(PYTEST_ARGS) pytests

# The whole suite with the extension built under ASan+UBSan.  The interpreter
# is not instrumented, so the runtimes are preloaded and leak checks are off
# (CPython keeps objects until exit by design).
ASAN_ENV = ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
           LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)"
asan: deps
	rm -rf build/asan && mkdir -p build/asan
	$(CC) $(CORE_CFLAGS) $(SAN_FLAGS) -o build/asan/test_core ext/test/test_core.c $(CORE_SRC) $(CORE_LIBS)
	build/asan/test_core
	cp -r smban build/asan/ && rm -f build/asan/smban/*.so
	SMBAN_CFLAGS="$(SAN_FLAGS) -O1" SMBAN_LDFLAGS="$(SAN_FLAGS)" \
	    $(PY) setup.py -q build_ext --build-lib build/asan --build-temp build/asan/tmp
	$(ASAN_ENV) PYTHONPATH=$(CURDIR)/build/asan SMBAN_SANITIZED=1 $(PY) -P -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) pytests

bench: deps build
	$(PY) bench/run.py

demo: deps build
	$(PY) -m smban demo

clean:
	rm -rf build smban/*.so .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

# ---- ban backend (iptc.c): plain-C unit tests of address and option parsing ----
# (no table is touched: runs without root; the transactions are tested by pytest
# in private network namespaces)
IPTC_LIBS := $(shell pkg-config --libs libiptc 2>/dev/null) -lpthread
.PHONY: ctest-iptc asan-iptc
build/test_iptc: ext/test/test_iptc.c ext/iptc.c ext/iptc.h ext/smban.h
	@mkdir -p build
	$(CC) $(CORE_CFLAGS) $(EXTRA_CFLAGS) -o $@ ext/test/test_iptc.c ext/iptc.c $(IPTC_LIBS)
ctest-iptc: build/test_iptc
	build/test_iptc
asan-iptc:
	@mkdir -p build/asan-iptc
	$(CC) $(CORE_CFLAGS) $(SAN_FLAGS) -o build/asan-iptc/test_iptc ext/test/test_iptc.c ext/iptc.c $(IPTC_LIBS)
	build/asan-iptc/test_iptc
ctest: ctest-iptc
asan: asan-iptc
