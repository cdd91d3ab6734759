"""make lab: a throw-away sendmail under attack, watched by a real fail2ban.

    python3 -m lab [--compare stock] [--quiet]     (from the source tree's root)

Two network namespaces joined by a veth pair stand for a mail server and
"the internet".  In the server namespace a real sendmail runs with a
configuration generated from lab/sendmail.mc (STARTTLS with a throw-away
certificate and a cipher list an old-cipher client cannot meet, SMTP AUTH
against a throw-away sasldb, greet_pause, novrfy/noexpn), logging through
syslog(3) to the lab's own /dev/log (a private mount namespace; see
lab/mountns.py), which this program receives and writes to a private
maillog.  A real fail2ban-server with a private configuration, socket, pid
file and database watches that maillog with smban's jail and bans in the
server namespace's firewall.  Scripted SMTP clients, each from its own
address in the internet namespace, play a bank's old-cipher MTA, a partner
MTA, password guessers, a pre-greeting talker, a VRFY/EXPN prober, a
scanner, a client that drops after RCPT, and a red team (IPv4 and IPv6)
whose MAIL FROM/RCPT TO addresses and VRFY/EXPN/ETRN arguments imitate
sendmail's own fields to get the partner, the bank and the server itself
banned.  The lab's stub name server (ReverseDNS) answers the reverse
lookup of the red team's first connections SERVFAIL, so sendmail logs both
the 450 "Relaying temporarily denied" and the 550 "Relaying denied" shapes.

It prints a timeline (each client's action, the lines sendmail wrote,
smban's verdict on each, each ban) and a final table.  With --compare
stock it runs the same scenario a second time with fail2ban's stock
sendmail-auth + sendmail-reject[mode=extra] and iptables-multiport, and
prints both tables side by side.

Everything lives in a private temporary directory and the two namespaces;
everything is torn down at the end whatever happened (try/finally, atexit,
SIGINT/SIGTERM/SIGHUP): processes are killed by process group and by
namespace membership, the namespaces deleted, the directory removed.
Nothing of the machine's own mail system, syslog or firewall is touched.

The parts, one module each: common (addresses, names, the cast of
clients), netns (network namespaces, shared with the test suite), network
(the namespaces, the veth pair, the name server), sendmail (its files, its
mount namespace with mountns, its log), fail2ban_server, clients (the SMTP
clients), timeline, scenario (the story, its result and the table), and
testbed (the Lab that composes them and tears them down).  __main__ is the
command line.
"""
