#!/usr/bin/env bash
# make cluster-deps: install Debian's crowdsec (the Local API smban-crowdsec
# pushes to) and crowdsec-firewall-bouncer (what enforces the decisions on
# the other hosts of make cluster).  The tests and make cluster run their
# own LAPI and bouncer with private configurations in network namespaces;
# the machine's own services are kept from running:
#   - no Central API registration (it needs the internet): the package
#     skips it when /etc/crowdsec/online_api_credentials.yaml exists and is
#     not empty, so an empty machine gets a one-line comment there;
#   - no service started during the install (policy-rc.d), and both
#     services disabled at boot (the bouncer would write the machine's
#     firewall).
set -euo pipefail
. "$(dirname "$0")/apt-quiet.sh"

PKGS="crowdsec crowdsec-firewall-bouncer"

missing=$(missing_packages $PKGS)
if [ -z "$missing" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "make cluster-deps: missing Debian packages:$missing - run it as root" >&2
    exit 1
fi

echo "make cluster-deps: installing$missing (no CrowdSec service will run)"
mkdir -p /etc/crowdsec
if [ ! -s /etc/crowdsec/online_api_credentials.yaml ]; then
    printf '# no Central API: written by smban (lab/crowdsec-deps.sh) before installing crowdsec\n' \
        > /etc/crowdsec/online_api_credentials.yaml
fi
rc=0
apt_install_quietly $missing || rc=$?

# (systemctl disable works without a running systemd: it removes the links)
for unit in crowdsec.service crowdsec-firewall-bouncer.service; do
    if [ -d /run/systemd/system ]; then
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    else
        systemctl disable "$unit" >/dev/null 2>&1 || true
    fi
done
exit "$rc"
