# Sourced by lab/deps.sh and lab/crowdsec-deps.sh: which Debian packages are
# missing, and installing them without letting their maintainer scripts
# start a service.
#
#   missing_packages PKG...       prints the ones not installed (" a b")
#   apt_install_quietly PKG...    the exit status of apt-get
#
# A policy-rc.d that refuses every start is in place during the install
# (unless the machine already has one, which is then left as it is).
apt_install_quietly() {
    local guard= rc=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    (
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "$@" >/dev/null
    ) || rc=$?
    [ -z "$guard" ] || rm -f /usr/sbin/policy-rc.d
    return "$rc"
}

missing_packages() {
    local p out=
    for p in "$@"; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'ok installed' || out="$out $p"
    done
    printf '%s' "$out"
}
