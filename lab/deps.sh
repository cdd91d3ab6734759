#!/usr/bin/env bash
# make lab-deps: install the lab's Debian packages (a sendmail that never runs
# as the machine's mail server, Cyrus SASL tools, OpenSSL, m4).
#
# Refuses (exit status 3) when another mail transport agent is installed:
# sendmail-bin conflicts with every package providing mail-transport-agent,
# so apt would remove the machine's MTA.  Any other failure: another status.
# Keeps the package from starting a system sendmail (policy-rc.d during the
# install) and checks that none runs after.
set -euo pipefail
. "$(dirname "$0")/apt-quiet.sh"

PKGS="sendmail-bin sendmail-cf sasl2-bin libsasl2-modules openssl m4 iproute2 util-linux"

missing=$(missing_packages $PKGS)
if [ -z "$missing" ]; then
    exit 0
fi

# Another MTA installed?  Anything but sendmail providing mail-transport-agent,
# or one of the usual names (some provide it only virtually).
others=$(dpkg-query -W -f='${Package}\t${Status}\t${Provides}\n' 2>/dev/null |
    awk -F'\t' '$2 ~ /ok installed/ && ($3 ~ /mail-transport-agent/ ||
        $1 ~ /^(postfix|exim4|exim4-daemon-.*|opensmtpd|nullmailer|dma|msmtp-mta|ssmtp|courier-mta|masqmail|esmtp-run|citadel-mta|xmail)$/) &&
        $1 !~ /^sendmail/ {print $1}' | sort -u | paste -sd ' ' -)
if [ -n "$others" ]; then
    echo "make lab-deps: refusing: another mail transport agent is installed ($others)" >&2
    echo "  installing sendmail-bin would remove it; the lab tests skip without sendmail." >&2
    exit 3
fi

if [ "$(id -u)" != 0 ]; then
    echo "make lab-deps: missing Debian packages:$missing - run 'make lab-deps' as root" >&2
    exit 1
fi

echo "make lab-deps: installing$missing (no system sendmail will be started)"
rc=0
apt_install_quietly $missing || rc=$?

# Debian's postinst may have started a daemon anyway (no policy-rc.d honoured,
# or sendmailconfig): stop it, and keep it from starting at boot.
if command -v update-rc.d >/dev/null && [ -e /etc/init.d/sendmail ]; then
    update-rc.d sendmail disable >/dev/null 2>&1 || true
fi
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    systemctl disable --now sendmail.service >/dev/null 2>&1 || true
fi
# Any sendmail process in this machine's own network namespace now was started
# by the package (we installed sendmail just now, so the machine had none);
# the lab's sendmail always runs in a namespace of its own.
host_net=$(stat -L -c %i /proc/self/ns/net)
for d in /proc/[0-9]*; do
    case "$(cat "$d/comm" 2>/dev/null)" in
        sendmail*|sm-mta*) ;;
        *) continue ;;
    esac
    [ "$(stat -L -c %i "$d/ns/net" 2>/dev/null)" = "$host_net" ] || continue
    echo "make lab-deps: stopping the sendmail the package started (pid ${d#/proc/})"
    kill "${d#/proc/}" 2>/dev/null || true
done
exit $rc
