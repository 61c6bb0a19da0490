#!/bin/sh
# changelog.sh PKG_VERSION: the Debian-format changelog of the package (one
# entry for this version, listing the commits since the previous tag, at most
# 40), dated by the commit so the output is reproducible.
set -eu
ver=$1
maint="tibbersync maintainers <tibbersync@users.noreply.github.com>"
date=$(git log -1 --format=%cD 2>/dev/null || echo "Thu, 01 Jan 1970 00:00:00 +0000")
range=HEAD
if prev=$(git describe --tags --abbrev=0 HEAD^ 2>/dev/null); then range="$prev..HEAD"; fi
printf 'tibbersync (%s) unstable; urgency=medium\n\n' "$ver"
if git rev-parse HEAD >/dev/null 2>&1; then
  git log --no-merges -n 40 --format=%s "$range" | while IFS= read -r subj; do
    printf '%s\n' "$subj" | fold -s -w 70 | awk 'NR==1{print "  * " $0; next} {print "    " $0}'
  done | sed 's/[[:space:]]*$//'
else
  printf '  * Release %s.\n' "$ver"
fi
printf '\n -- %s  %s\n' "$maint" "$date"
