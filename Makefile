# smban — build, test, benchmark and demo.
#
#   make demo    classify the bundled sample log: the story's MTA spared, a brute forcer caught
#   make test    install what is missing (Debian packages), build, run the C and pytest suites
#   make asan    the same suites under AddressSanitizer and UndefinedBehaviorSanitizer
#   make bench   the benchmark table against fail2ban, measured in one run
#   make properties  the property tests with a larger, seeded budget (CI)
#   make mutants the kept deliberate bugs (mutants/): the tests must catch every one (CI)
#   make deb     the Debian package, into build/deb/ (make deb-test: install, reinstall, purge it; CI)

SHELL := /bin/bash

# Everything the project needs to build, test and benchmark, from Debian's archive.
DEB_PKGS := build-essential pkg-config python3 python3-dev python3-setuptools \
            python3-pytest python3-hypothesis fail2ban libpcre2-dev libiptc-dev \
            libnftables-dev nftables libipset-dev ipset \
            iptables iproute2 gcc clang-14 libclang-rt-14-dev valgrind \
            python3-systemd systemd-journal-remote \
            debhelper dh-python python3-all-dev fakeroot lintian

# Build and test against the interpreter fail2ban runs on (the #! line of
# fail2ban-server), never whatever python3 comes first on PATH.
F2B_SERVER = $(shell command -v fail2ban-server 2>/dev/null || echo /usr/bin/fail2ban-server)
PY = $(or $(shell sed -n '1s/^\#! *\([^ ]*\).*/\1/p' $(F2B_SERVER) 2>/dev/null),/usr/bin/python3)

CC ?= gcc
CORE_SRC := ext/frame.c ext/session.c ext/classify.c ext/reader.c
CORE_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -O2 -g $(shell pkg-config --cflags libpcre2-8 2>/dev/null)
CORE_LIBS := $(shell pkg-config --libs libpcre2-8 2>/dev/null)
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
PYTEST_ARGS ?=

.PHONY: deps build ctest test asan bench properties mutants demo clean

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

build/test_core: ext/test/test_core.c $(CORE_SRC) ext/smban.h ext/errors.h ext/rules.def
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

# The property tests and the adversarial bulk with a larger budget of random
# examples, seeded (CI runs it): a failure is replayed with the seed printed.
PROPERTY_SEED ?= $(shell date +%s)
PROPERTY_SCALE ?= 5
properties: deps build
	@echo "make properties: seed $(PROPERTY_SEED), $(PROPERTY_SCALE)x the examples of make test;" \
	    "replay: make properties PROPERTY_SEED=$(PROPERTY_SEED)"
	SMBAN_PROPERTY_SEED=$(PROPERTY_SEED) SMBAN_PROPERTY_SCALE=$(PROPERTY_SCALE) \
	    SMBAN_ADV_SEED=$(PROPERTY_SEED) SMBAN_ADV_LINES=2000000 \
	    $(PY) -m pytest -q -p no:cacheprovider --hypothesis-seed=$(PROPERTY_SEED) \
	    pytests/test_properties.py pytests/test_adversarial.py

# Each deliberate bug of mutants/ applied to a copy of the tree, one at a
# time: the tests it names must fail (tools/mutants.py; MUTANTS_ARGS="--only NN").
MUTANTS_ARGS ?=
mutants: deps build
	$(PY) tools/mutants.py $(MUTANTS_ARGS)

demo: deps build
	$(PY) -m smban demo

clean:
	rm -rf build smban/*.so .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

# ---- ban backend (ext/README.md): plain-C unit tests of address and option parsing ----
# (no table is touched: runs without root; the transactions are tested by pytest
# in private network namespaces)
IPTC_SRC := ext/addr.c ext/iptc_rule.c ext/iptc.c ext/iptc_set.c ext/ipset.c
IPTC_HDR := ext/addr.h ext/backend.h ext/errors.h ext/iptc.h ext/iptc_impl.h ext/ipset.h
IPTC_LIBS := $(shell pkg-config --libs libiptc libipset 2>/dev/null) -lpthread -lm
.PHONY: ctest-iptc asan-iptc
build/test_iptc: ext/test/test_iptc.c $(IPTC_SRC) $(IPTC_HDR)
	@mkdir -p build
	$(CC) $(CORE_CFLAGS) $(EXTRA_CFLAGS) -o $@ ext/test/test_iptc.c $(IPTC_SRC) $(IPTC_LIBS)
ctest-iptc: build/test_iptc
	build/test_iptc
asan-iptc:
	@mkdir -p build/asan-iptc
	$(CC) $(CORE_CFLAGS) $(SAN_FLAGS) -o build/asan-iptc/test_iptc ext/test/test_iptc.c $(IPTC_SRC) $(IPTC_LIBS)
	build/asan-iptc/test_iptc
ctest: ctest-iptc
asan: asan-iptc

# ---- hardening: libFuzzer harnesses, valgrind, the cost of one line ----
#   make fuzz [FUZZ_SECONDS=N]  replay ext/fuzz/regress, then run each harness N s
#   make valgrind               the C unit tests and a classification run under memcheck
#   make worst-line             the slowest lines of the fixtures and of the fuzz corpus
FUZZ_CC ?= clang-14
FUZZ_SECONDS ?= 60
FUZZERS := frame line session table addr blame reader
FUZZ_CFLAGS := -std=gnu11 -Wall -Wextra -Werror -g -O1 -fno-omit-frame-pointer \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
               $(shell pkg-config --cflags libpcre2-8 2>/dev/null)
FUZZ_OPTS = -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 \
            -dict=ext/fuzz/sendmail.dict -print_final_stats=1
.PHONY: fuzz valgrind worst-line
build/fuzz/fuzz_%: ext/fuzz/fuzz_%.c ext/fuzz/fuzz_event.h $(CORE_SRC) ext/smban.h ext/errors.h ext/rules.def
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(CORE_SRC) $(CORE_LIBS)
# the address parser alone: libc only, no libiptc
build/fuzz/fuzz_addr: ext/fuzz/fuzz_addr.c ext/addr.c ext/addr.h ext/errors.h
	@mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< ext/addr.c
fuzz: deps $(FUZZERS:%=build/fuzz/fuzz_%)
	rm -rf build/fuzz/seeds && $(PY) ext/fuzz/seeds.py build/fuzz/seeds pytests/fixtures/*.log
	@set -e; export TZ=UTC; for h in $(FUZZERS); do \
	    mkdir -p build/fuzz/corpus/$$h build/fuzz/crashes; \
	    if [ -d ext/fuzz/regress/$$h ]; then \
	        build/fuzz/fuzz_$$h ext/fuzz/regress/$$h/* > build/fuzz/$$h.regress.log 2>&1 \
	        || { tail -30 build/fuzz/$$h.regress.log; echo "fuzz_$$h: a regression input fails again"; exit 1; }; fi; \
	    max=4096; [ $$h != session ] || max=16384; \
	    echo "fuzz_$$h: $(FUZZ_SECONDS) s"; \
	    build/fuzz/fuzz_$$h $(FUZZ_OPTS) -max_len=$$max -artifact_prefix=build/fuzz/crashes/$$h- \
	        build/fuzz/corpus/$$h build/fuzz/seeds/$$h > build/fuzz/$$h.log 2>&1 \
	    || { tail -40 build/fuzz/$$h.log; echo "fuzz_$$h: FAILED, the input is in build/fuzz/crashes/"; exit 1; }; \
	done; \
	printf '%-14s %14s %10s %9s %8s %8s\n' harness executions execs/s "peak MiB" corpus crashes; \
	for h in $(FUZZERS); do \
	    printf '%-14s %14s %10s %9s %8s %8s\n' fuzz_$$h \
	        $$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/$$h.log) \
	        $$(sed -n 's/^stat::average_exec_per_sec: *//p' build/fuzz/$$h.log) \
	        $$(sed -n 's/^stat::peak_rss_mb: *//p' build/fuzz/$$h.log) \
	        $$(ls build/fuzz/corpus/$$h | wc -l) 0; \
	done

build/worst_line: bench/worst_line.c $(CORE_SRC) ext/smban.h ext/rules.def
	@mkdir -p build
	$(CC) $(CORE_CFLAGS) -o $@ bench/worst_line.c $(CORE_SRC) $(CORE_LIBS)
worst-line: build/worst_line
	TZ=UTC build/worst_line -t 3 pytests/fixtures/*.log
	TZ=UTC build/worst_line -t 3 -p
	if [ -d build/fuzz/corpus/line ]; then TZ=UTC build/worst_line -t 3 build/fuzz/corpus/line; fi

VALGRIND := valgrind -q --error-exitcode=1 --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all
valgrind: deps build/test_core build/test_iptc build/worst_line
	TZ=UTC $(VALGRIND) build/test_core
	$(VALGRIND) build/test_iptc
	TZ=UTC $(VALGRIND) build/worst_line -r 1 -p pytests/fixtures/*.log

# ---- install into the fail2ban on this machine (make install, make uninstall) ----
#   make install [PREFIX=/usr/local] [FAIL2BAN_DIR=/etc/fail2ban] [DESTDIR=stage]
# builds for fail2ban-server's interpreter (PY above) when the build is stale,
# puts the smban package where that interpreter imports it, the filter in
# filter.d/ and the three actions in action.d/ (never jail.conf, jail.local or
# jail.d/), keeps a manifest, and prints the jail.local snippet;
# make uninstall removes exactly what the manifest lists.  tools/install.py
# says why each place, and checks the prerequisites first.
PREFIX ?= /usr/local
FAIL2BAN_DIR ?= /etc/fail2ban
INSTALL_ARGS = --destdir "$(DESTDIR)" --prefix "$(PREFIX)" --fail2ban-dir "$(FAIL2BAN_DIR)"
EXT_SUFFIX = $(shell $(PY) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
CORE_SO = smban/_core$(EXT_SUFFIX)
IPTC_SO = smban/_iptc$(EXT_SUFFIX)
.PHONY: install uninstall
install:
	@$(PY) tools/install.py check $(INSTALL_ARGS)
	@if [ ! -f $(CORE_SO) ] || [ ! -f $(IPTC_SO) ] || [ -n "$$(find ext setup.py -type f -newer $(CORE_SO) -print -quit)" ]; then \
	    $(MAKE) --no-print-directory build; fi
	@$(PY) tools/install.py install $(INSTALL_ARGS)
uninstall:
	@$(PY) tools/install.py uninstall $(INSTALL_ARGS)

# ---- make lab: a throw-away sendmail under attack, in network namespaces ----
#   make lab                 the smban jail: timeline and final table
#   make lab COMPARE=stock   also fail2ban's stock sendmail jails, tables side by side
#   make lab BAN=ipset       the smban jail banning into a kernel set (ipset or nftables)
# lab/__init__.py says what runs where; everything is torn down at the end.
# make lab-deps installs sendmail-bin and friends, refusing when another MTA is
# installed, and never starts a system sendmail (lab/deps.sh).
.PHONY: lab lab-deps cluster-deps cluster
lab-deps:
	@bash lab/deps.sh
# CrowdSec's LAPI and firewall bouncer (smban-crowdsec's tests, make cluster);
# no CrowdSec service of the machine's is started or enabled
cluster-deps:
	@bash lab/crowdsec-deps.sh
# two MX hosts, one ban list: mx1 bans and shares through the LAPI, mx2's
# CrowdSec bouncer refuses the same guessers (lab/cluster.py)
cluster: deps lab-deps cluster-deps build
	$(PY) -m lab.cluster
lab: deps lab-deps build
	$(PY) -m lab $(if $(COMPARE),--compare $(COMPARE)) $(if $(BAN),--ban $(BAN))

# ---- make deb: the Debian package (debian/), built from a copy of the tree ----
# dpkg-buildpackage writes beside the source, so the source is a copy in
# build/deb/src and the package lands in build/deb/.  lintian must report no
# error (the one tag suppressed: a local build's changelog names no archive
# distribution).
.PHONY: deb deb-test
deb: deps
	rm -rf build/deb && mkdir -p build/deb/src
	tar -c --exclude=./build --exclude=./.git --exclude='*.so' --exclude=__pycache__ \
	    --exclude=.pytest_cache --exclude=.hypothesis -f - . | tar -x -C build/deb/src -f -
	cd build/deb/src && dpkg-buildpackage -us -uc -b
	lintian --fail-on error --suppress-tags bad-distribution-in-changes-file build/deb/*.changes

# The package installed with apt as an administrator would, over a machine
# without a make install copy: fail2ban runs it with no source tree on
# sys.path; a reinstall keeps an edited conffile; purge leaves nothing of it.
deb-test: deb
	SMBAN_DEB=$$(ls build/deb/smban_*_$$(dpkg --print-architecture).deb) \
	    $(PY) -m pytest -q -p no:cacheprovider pytests/test_deb.py
