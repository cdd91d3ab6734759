"""Build smban's C extensions: smban._core (the classifier, always),
smban._iptc (the iptables ban backend with its ipset mode, only where
libiptc and libipset are) and
smban._nft (the nftables ban backend, only where libnftables is): without
a backend's library smban classifies, and its Python module says what is
missing.

Compiler and linker flags come from pkg-config; extra flags (sanitizers)
from the SMBAN_CFLAGS and SMBAN_LDFLAGS environment variables.
"""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

#: The ban backend's files: the binding, the libiptc backend and its set
#: mode (libipset), addresses.
IPTC_SOURCES = ["ext/addr.c", "ext/ipset.c", "ext/iptc.c", "ext/iptc_module.c",
                "ext/iptc_rule.c", "ext/iptc_set.c"]
#: The nftables backend's files.
NFT_SOURCES = ["ext/addr.c", "ext/nft.c", "ext/nft_module.c"]


def pkg_config(flag, *pkgs):
    out = subprocess.run(["pkg-config", flag, *pkgs], check=True,
                         capture_output=True, text=True).stdout
    return shlex.split(out)


def extension(name, sources, pkgs):
    return Extension(
        name,
        sources=sources,
        depends=sorted(glob.glob("ext/*.h") + glob.glob("ext/*.def")),
        # hidden visibility: calls between the files of one extension are
        # direct, not through the PLT (only its PyInit_ is exported)
        extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
        + pkg_config("--cflags", *pkgs) + shlex.split(os.environ.get("SMBAN_CFLAGS", "")),
        extra_link_args=pkg_config("--libs", *pkgs)
        + shlex.split(os.environ.get("SMBAN_LDFLAGS", "")),
    )


extensions = [extension("smban._core",
                        sorted(set(glob.glob("ext/*.c")) - set(IPTC_SOURCES) - set(NFT_SOURCES)),
                        ["libpcre2-8"])]
if subprocess.run(["pkg-config", "--exists", "libiptc", "libipset"]).returncode == 0 \
        and all(os.path.exists(p) for p in IPTC_SOURCES):
    extensions.append(extension("smban._iptc", IPTC_SOURCES, ["libiptc", "libipset"]))
if subprocess.run(["pkg-config", "--exists", "libnftables"]).returncode == 0 \
        and all(os.path.exists(p) for p in NFT_SOURCES):
    extensions.append(extension("smban._nft", NFT_SOURCES, ["libnftables"]))

setup(
    name="smban",
    version="0.1.0",
    description="A fail2ban plug-in library for sendmail servers",
    license="GPL-2.0-or-later",
    packages=["smban"],
    # the bundled sample log and the like (smban/data), read by smban demo
    package_data={"smban": ["data/*"]},
    ext_modules=extensions,
)
