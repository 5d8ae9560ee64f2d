#!/usr/bin/env bash
# Debian packages the tests need beside Python's: fonts and poppler for the volunteers' PDF records
# (the CJK font is embedded, pdftotext/pdffonts check it), libfaketime for the fault suite's skewed
# clocks, Chromium and its driver for the console's browser tests. Installs what is missing when run
# as root on Debian; otherwise names it and fails, so a test that needs it never silently skips.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for package in fonts-wqy-zenhei poppler-utils faketime chromium chromium-driver; do
    have "$package" || need+=("$package")
done
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${need[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
    echo "missing Debian packages: ${need[*]} (run: sudo apt-get install ${need[*]})" >&2
    exit 1
fi
