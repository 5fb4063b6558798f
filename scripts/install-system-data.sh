#!/bin/sh
# System packages the tasks read at run time: third-party data is installed here, never committed.
#   dataset-fashion-mnist  Fashion-MNIST IDX files          (tasks vision, mnist-words, pixels)
#   trans-de-en            Ding German-English dictionary   (task translate)
#   espeak-ng, flite       speech synthesisers              (task spoken-digits)
#   chromium               headless browser for the HTML attention-view test
# Idempotent: installs only what is missing; needs root (or sudo) the first time.
set -e  # a failure is reported by the Makefile as a warning
PKGS="dataset-fashion-mnist trans-de-en espeak-ng flite chromium"
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: not a Debian/Ubuntu system; install these yourself for the tasks that need them:$missing" >&2
    exit 0
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
echo "installing system data packages:$missing"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
