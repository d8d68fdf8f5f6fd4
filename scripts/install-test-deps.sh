#!/usr/bin/env bash
# Installs what the tests need beyond cargo: Debian packages (interop peers, network tools)
# and Python packages (real client libraries). `.ci/run` calls it; run it yourself once
# before `cargo test --workspace` to run every test instead of skipping some.
#
# Tests that need one of these, or root, print "skipped: <why>" and return when it is
# missing, unless KEEPWIRE_REQUIRE_TOOLS=1 (CI sets it): then a missing tool fails the test.
set -euo pipefail

# Debian packages, one line per use.
DEBIAN_PACKAGES=(
    iproute2 # fault suite, socks tests: ip netns, veth pairs (tests/faults.rs, tests/socks.rs)
    iptables # fault suite: a far host that drops everything
    python3 # fault suite: a far peer that crashes without a FIN or half-closes on cue
    apache2-utils # ab: HTTP/1.0 keep-alive and close (crates/keepwire-cli/tests/http.rs)
    wrk           # HTTP/1.1 persistence under load (tests/http.rs, scripts/bench-http.sh)
    curl          # HTTP/1.0 keep-alive connection reuse (tests/http.rs)
    nginx-light   # the reference web server of scripts/bench-http.sh
    openssl    # tls tests: `openssl s_client` talks to `keepwire serve --tls-*`
    haproxy    # tls tests: TLS + PROXY v2 behind HAProxy in TCP mode
    microsocks # socks tests: the SOCKS5 proxy between the client and the far server
    gcc        # compare_script.rs: cc -O2 builds the C epoll echo (bench/peers/c_echo.c)
)

# Python packages from PyPI, pinned.
PYTHON_PACKAGES=(
    smpplib==2.2.4   # SMPP 3.4 client: protocol_interop.rs against serve --protocol smpp
    cmppy==0.3       # CMPP 3.0 short-link client: protocol_interop.rs against serve --protocol cmpp3
    pyiso8583==4.0.1 # ISO 8583 reference codec: keepwire/tests/iso8583_interop.rs
)

missing=()
for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install-test-deps: not root; cannot install: ${missing[*]}" >&2
    else
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq || true
        # nginx and haproxy are started by the tests with their own configs: keep their
        # packages from starting system services (on port 80, say) while they install.
        policy=/usr/sbin/policy-rc.d
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod +x "$policy"
            trap 'rm -f "$policy"' EXIT
        fi
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi
if ((${#PYTHON_PACKAGES[@]})); then
    python3 -m pip install -q --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
fi
