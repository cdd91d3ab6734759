/*
 * test_iptc.c — unit tests of the ban backend's input checking, in plain C:
 * address validation (smban_addr_parse / smban_addr_format, addr.c) and
 * option parsing (smban_iptc_new, iptc_rule.c).  None of this reads or writes a table, so it
 * runs without root and without a network namespace; the transactions are
 * tested through pytest in private namespaces.
 * Prints "N passed, N failed" and exits non-zero on a failure.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../iptc.h"
#include "check.h"

/* text parses for family (with min_prefix) and formats back as want. */
static void accepts(const char *text, int family, int min_prefix, const char *want)
{
    char err[SMBAN_ERR_LEN] = "", buf[SMBAN_ADDR_LEN];
    smban_addr a;
    int rc = smban_addr_parse(text, family, min_prefix, &a, err);
    CHECK(rc == 0);
    if (rc) {
        fprintf(stderr, "  refused %s: %s\n", text, err);
        return;
    }
    smban_addr_format(&a, buf);
    CHECK(strcmp(buf, want) == 0);
    if (strcmp(buf, want))
        fprintf(stderr, "  %s formats as %s, want %s\n", text, buf, want);
}

/* text is refused with a message containing why. */
static void refuses(const char *text, int family, int min_prefix, const char *why)
{
    char err[SMBAN_ERR_LEN] = "";
    smban_addr a;
    int rc = smban_addr_parse(text, family, min_prefix, &a, err);
    CHECK(rc == SMBAN_EINVAL);
    CHECK(strstr(err, why) != NULL);
    if (rc != SMBAN_EINVAL || !strstr(err, why))
        fprintf(stderr, "  %s: rc %d, err '%s', want '%s'\n", text ? text : "(null)", rc,
                err, why);
}

static void test_addresses(void)
{
    char big[400];
    accepts("192.0.2.1", 4, 0, "192.0.2.1");
    accepts("192.0.2.1/32", 4, 0, "192.0.2.1");
    accepts("0.0.0.0", 4, 0, "0.0.0.0");
    accepts("2001:db8::1", 6, 0, "2001:db8::1");
    accepts("2001:DB8:0:0:0:0:0:1", 6, 0, "2001:db8::1");
    accepts("2001:db8::1/128", 6, 0, "2001:db8::1");
    accepts("198.51.100.0/24", 4, 24, "198.51.100.0/24");
    accepts("2001:db8::/48", 6, 32, "2001:db8::/48");

    refuses(NULL, 4, 0, "empty");
    refuses("", 4, 0, "empty");
    refuses("mail.example.com", 4, 0, "host names");
    refuses("192.0.2.1;reboot", 4, 0, "not an IP address");
    refuses("$(id)", 4, 0, "not an IP address");
    refuses("192.0.2.1 ", 4, 0, "not an IP address");
    refuses("\xff\xfe", 4, 0, "not an IP address");
    refuses("192.0.2.256", 4, 0, "not an IPv4 address");
    refuses("1.2.3", 4, 0, "not an IPv4 address");
    refuses("01.2.3.4", 4, 0, "not an IPv4 address");
    refuses("2001:db8::1", 4, 0, "IPv6 address; this chain is IPv4");
    refuses("192.0.2.1", 6, 0, "IPv4 address; this chain is IPv6");
    refuses("::ffff:192.0.2.1", 6, 0, "IPv4-mapped");
    refuses("192.0.2.1/24", 4, 0, "only single addresses");
    refuses("192.0.2.1/33", 4, 0, "out of range");
    refuses("192.0.2.1/", 4, 0, "bad prefix");
    refuses("192.0.2.1/0032", 4, 0, "bad prefix");
    refuses("192.0.2.1/3/2", 4, 0, "bad prefix");
    refuses("10.0.0.0/8", 4, 16, "wider than");
    refuses("192.0.2.1/24", 4, 16, "host bits");
    refuses("2001:db8::1/64", 6, 48, "host bits");
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = 0;
    refuses(big, 4, 0, "too long");
    refuses("192.0.2.1", 5, 0, "family");
}

static int make(const char *chain, const char *ports, const char *proto,
                const char *block, int family, char err[SMBAN_ERR_LEN])
{
    smban_iptc_options o;
    smban_iptc *c = NULL;
    int rc;
    smban_iptc_options_default(&o);
    o.chain = chain;
    o.ports = ports;
    o.protocol = proto;
    o.blocktype = block;
    o.family = family;
    o.lockfile = "/nonexistent/xtables.lock";    /* never opened here */
    rc = smban_iptc_new(&o, &c, err);
    CHECK((rc == 0) == (c != NULL));
    smban_iptc_backend.free(c);
    return rc;
}

static void option_ok(const char *chain, const char *ports, const char *proto,
                      const char *block, int family)
{
    char err[SMBAN_ERR_LEN] = "";
    int rc = make(chain, ports, proto, block, family, err);
    CHECK(rc == 0);
    if (rc)
        fprintf(stderr, "  %s/%s/%s/%s refused: %s\n", chain, ports, proto, block, err);
}

static void option_bad(const char *chain, const char *ports, const char *proto,
                       const char *block, int family, const char *why)
{
    char err[SMBAN_ERR_LEN] = "";
    int rc = make(chain, ports, proto, block, family, err);
    CHECK(rc == SMBAN_EINVAL && strstr(err, why));
    if (rc != SMBAN_EINVAL || !strstr(err, why))
        fprintf(stderr, "  rc %d err '%s', want '%s'\n", rc, err, why);
}

static void test_options(void)
{
    option_ok("f2b-smban", "smtp,465,submission", "tcp", "REJECT", 4);
    option_ok("f2b-smban", " 25 , 587 ", "tcp", "REJECT --reject-with icmp-port-unreachable", 6);
    option_ok("f2b-smban", "1000:2000,25", "udp", "DROP", 4);
    option_ok("f2b-smban", "all", "tcp", "REJECT --reject-with tcp-reset", 4);
    option_ok("f2b-smban", "all", "all", "REJECT", 6);
    option_ok("f2b-xxxxxxxxxxxxxxxxxxxxxxxx", "all", "tcp", "DROP", 4);   /* 28 chars */
    option_ok("f2b-x", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15", "tcp", "DROP", 4);

    option_bad("f2b-xxxxxxxxxxxxxxxxxxxxxxxxx", "all", "tcp", "DROP", 4, "chain name");
    option_bad("", "all", "tcp", "DROP", 4, "chain name");
    option_bad("-F", "all", "tcp", "DROP", 4, "chain name");
    option_bad("a b", "all", "tcp", "DROP", 4, "chain name");
    option_bad("RETURN", "all", "tcp", "DROP", 4, "reserved");
    option_bad("f2b-x", "", "tcp", "DROP", 4, "empty port list");
    option_bad("f2b-x", "25,", "tcp", "DROP", 4, "empty port");
    option_bad("f2b-x", "25;id", "tcp", "DROP", 4, "not a port");
    option_bad("f2b-x", "65536", "tcp", "DROP", 4, "out of range");
    option_bad("f2b-x", "2000:1000", "tcp", "DROP", 4, "reversed");
    option_bad("f2b-x", "nosuchservice", "tcp", "DROP", 4, "unknown tcp service");
    option_bad("f2b-x", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16", "tcp", "DROP", 4,
               "too many ports");
    option_bad("f2b-x", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15:20", "tcp", "DROP", 4,
               "too many ports");
    option_bad("f2b-x", "25", "all", "DROP", 4, "needs port 'all'");
    option_bad("f2b-x", "25", "icmp", "DROP", 4, "protocol");
    option_bad("f2b-x", "25", "tcp", "ACCEPT", 4, "blocktype");
    option_bad("f2b-x", "25", "tcp", "REJECT --reject-with", 4, "blocktype");
    option_bad("f2b-x", "25", "tcp", "REJECT; reboot", 4, "blocktype");
    option_bad("f2b-x", "25", "udp", "REJECT --reject-with tcp-reset", 4, "needs protocol tcp");
    option_bad("f2b-x", "25", "tcp", "DROP", 5, "family");
}

int main(void)
{
    test_addresses();
    test_options();
    printf("test_iptc: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
