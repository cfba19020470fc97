#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the browser tests (tests/support/browser.py runs this once).
#
#   deploy/chromium.sh [up]    install the apt packages chromium and chromium-driver (and two font
#                              packages) if /usr/bin/chromium, /usr/bin/chromedriver or a font is
#                              missing; print versions
#   deploy/chromium.sh status  print versions; exit 0 if all of it is installed, 3 if not
#
# Nothing is started here: each test session starts its own headless browser through
# ChromeDriver. Only Debian's packages are used: no browser or driver is downloaded from
# anywhere else (Selenium's selenium-manager would try; tests/support/browser.py names both paths).
# apt-get update runs only when apt knows no candidate for a package, or an install fails.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="$REPO/.deploy/chromium"
CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
# fonts-liberation: recommended by chromium-common (metric-compatible Arial/Times/Courier), kept
# while the other recommends (udev, upower, printer tools) are left out. fonts-wqy-microhei
# (5 MB): without a CJK font, Chinese text is drawn as empty boxes in screenshots.
PACKAGES=(chromium chromium-driver fonts-liberation fonts-wqy-microhei)
# One file of each package: any of them missing means install.
FILES=("$CHROMIUM" "$CHROMEDRIVER" /usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf
       /usr/share/fonts/truetype/wqy/wqy-microhei.ttc)

say() { echo "chromium: $*"; }
die() { echo "chromium: error: $*" >&2; exit 1; }

ROOT_HINT="installing Chromium needs root: run 'sudo apt-get install chromium chromium-driver', then this again"
# shellcheck source=deploy/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

installed() {
    local f
    for f in "${FILES[@]}"; do [ -e "$f" ] || return 1; done
    [ -x "$CHROMIUM" ] && [ -x "$CHROMEDRIVER" ]
}

apt_install() {
    # Lock::Timeout: wait for another apt/dpkg (an unattended upgrade, a parallel run) instead of failing.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        -o DPkg::Lock::Timeout=300 --no-install-recommends "${PACKAGES[@]}"
}

# True when apt's lists know no installable version of one of the packages (never updated, or stale).
no_candidate() {
    local p policy
    for p in "${PACKAGES[@]}"; do
        # captured first: `apt-cache ... | grep -q` fails under pipefail when grep stops reading early
        policy="$(apt-cache policy "$p" 2>/dev/null)" || return 0
        grep -Eq '^[[:space:]]*Candidate:[[:space:]]*[0-9]' <<<"$policy" || return 0
    done
    return 1
}

install_if_missing() {
    if installed; then return 0; fi
    command -v apt-get >/dev/null \
        || die "$CHROMIUM, $CHROMEDRIVER or a font is missing and there is no apt-get: install Chromium and a ChromeDriver of the same version at those paths (and fonts: Liberation, a CJK one)"
    mkdir -p "$STATE"
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another 'deploy/chromium.sh' is holding $STATE/.lock; wait for it or remove the lock"
    if installed; then return 0; fi  # the other run installed it while we waited
    local started=$SECONDS rc=0 updated=""
    if no_candidate; then
        say "apt knows no candidate for ${PACKAGES[*]}; running apt-get update"
        as_root apt-get update -q -o DPkg::Lock::Timeout=300 || say "apt-get update failed; trying the install anyway"
        updated=1
    fi
    say "installing ${PACKAGES[*]} with apt-get"
    apt_install || rc=$?
    if [ "$rc" != 0 ] && [ -z "$updated" ]; then
        say "install failed; running apt-get update and trying again"
        rc=0
        { as_root apt-get update -q -o DPkg::Lock::Timeout=300 && apt_install; } || rc=$?
    fi
    [ "$rc" = 0 ] || die "apt-get could not install ${PACKAGES[*]} (exit $rc); check the network and the apt sources (Debian 12 'main' and bookworm-security have them), then run this again"
    installed || die "apt-get finished but one of ${FILES[*]} is missing"
    say "installed in $((SECONDS - started))s"
}

versions() {
    local browser driver
    # --version of the Debian wrapper needs no display and opens no connection
    browser="$(timeout 30 "$CHROMIUM" --version 2>/dev/null)" || die "'$CHROMIUM --version' failed"
    driver="$(timeout 30 "$CHROMEDRIVER" --version 2>/dev/null)" || die "'$CHROMEDRIVER --version' failed"
    browser="${browser%%$'\n'*}" driver="${driver%%$'\n'*}"
    say "$browser ($CHROMIUM)"
    say "$driver ($CHROMEDRIVER)"
    # ChromeDriver drives only its own major version of the browser.
    local re='[[:space:]]([0-9]+)\.[0-9]+\.' bmajor="" dmajor=""
    [[ "$browser" =~ $re ]] && bmajor="${BASH_REMATCH[1]}"
    [[ "$driver" =~ $re ]] && dmajor="${BASH_REMATCH[1]}"
    [ -n "$bmajor" ] && [ "$bmajor" = "$dmajor" ] \
        || die "Chromium ($browser) and ChromeDriver ($driver) differ in major version: upgrade both with 'apt-get install chromium chromium-driver'"
}

cmd_up() {
    install_if_missing
    versions
}

cmd_status() {
    if ! installed; then
        say "not installed, or a package is missing (run 'deploy/chromium.sh up')"
        return 3
    fi
    versions
}

case "${1:-up}" in
    up) cmd_up ;;
    status) cmd_status ;;
    *) echo "usage: $0 [up|status]" >&2; exit 2 ;;
esac
