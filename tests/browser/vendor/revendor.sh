#!/bin/sh
# Re-vendor axe-core (a test tool: the accessibility checks of tests/browser/test_console_a11y.py)
# from the npm registry, at the version pinned here, checking the registry's integrity hash.
# Usage: tests/browser/vendor/revendor.sh [VERSION]   (then update VERSION below and commit)
set -eu
VERSION="${1:-4.14.1}"
HERE="$(cd "$(dirname "$0")" && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
# `npm pack` fetches the published tarball and checks it against the registry's integrity hash.
npm pack --silent "axe-core@$VERSION" >/dev/null
tar -xzf "axe-core-$VERSION.tgz"
cp package/axe.min.js "$HERE/axe.min.js"
cp package/LICENSE "$HERE/axe-core.LICENSE"
cd "$HERE"
sha256sum axe.min.js axe-core.LICENSE > axe-core.sha256
echo "$VERSION" > axe-core.version
echo "axe-core $VERSION vendored into $HERE"
