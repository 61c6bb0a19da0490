#!/bin/sh
# debversion.sh VERSION COMMIT_DATE: a Debian package version from the
# `git describe --tags --always --dirty` string the Makefile stamps.
#   v1.2.3                 -> 1.2.3
#   v1.2.3-4-gabc1234      -> 1.2.3+git4.abc1234
#   abc1234 (no tag)       -> 0.0~git20261205.abc1234
#   ...-dirty              -> ...+dirty (or .dirty)
set -eu
v=${1:-dev}
date=${2:-19700101}
dirty=""
case $v in *-dirty) dirty=1; v=${v%-dirty} ;; esac
case $v in
  v[0-9]*|[0-9]*.[0-9]*)
    v=${v#v}
    # 1.2.3-4-gabc -> 1.2.3+git4.abc
    v=$(printf '%s' "$v" | sed -E 's/-([0-9]+)-g([0-9a-f]+)$/+git\1.\2/; s/-/~/g')
    ;;
  *)
    v="0.0~git${date}.$(printf '%s' "$v" | tr -c 'a-zA-Z0-9.\n' '.')"
    ;;
esac
if [ -n "$dirty" ]; then
  case $v in *+*) v="$v.dirty" ;; *) v="$v+dirty" ;; esac
fi
printf '%s\n' "$v"
