"""Build smban._core, smban's C extension.

Compiler and linker flags come from pkg-config; extra flags (sanitizers)
from the SMBAN_CFLAGS and SMBAN_LDFLAGS environment variables.
"""
import glob
import os
import shlex
import subprocess

from setuptools import Extension, setup

PKGS = ["libpcre2-8"]
if subprocess.run(["pkg-config", "--exists", "libiptc"]).returncode == 0 \
        and os.path.exists(os.path.join("ext", "iptc.c")):
    PKGS.append("libiptc")


def pkg_config(flag):
    out = subprocess.run(["pkg-config", flag, *PKGS], check=True,
                         capture_output=True, text=True).stdout
    return shlex.split(out)


core = Extension(
    "smban._core",
    sources=sorted(glob.glob("ext/*.c")),
    depends=sorted(glob.glob("ext/*.h") + glob.glob("ext/*.def")),
    # hidden visibility: calls between the core's files are direct, not
    # through the PLT (only PyInit__core is exported)
    extra_compile_args=["-std=gnu11", "-Wall", "-Wextra", "-Werror", "-fvisibility=hidden"]
    + pkg_config("--cflags") + shlex.split(os.environ.get("SMBAN_CFLAGS", "")),
    extra_link_args=pkg_config("--libs") + shlex.split(os.environ.get("SMBAN_LDFLAGS", "")),
)

setup(
    name="smban",
    version="0.1.0",
    description="A fail2ban plug-in library for sendmail servers",
    license="GPL-2.0-or-later",
    packages=["smban"],
    ext_modules=[core],
)
