#!/usr/bin/env bash
# Builds the Go vulnerability database that govulncheck reads, into the
# directory given as the only argument, from the golang.org/x/vulndb module
# pinned in tools/go.mod. CI cannot reach vuln.go.dev; the module carries the
# same OSV reports, and its cmd/gendb writes them in the database layout.
#
# gendb reads a git repository, so the reports are committed into a scratch
# one, dated at the pinned version's time: the same pin always gives the same
# database. Nothing is rebuilt while DIR.version names the pinned version.
set -euo pipefail

out=${1:?usage: vulndb.sh DIR}
tools=$(cd "$(dirname "$0")" && pwd)
export GOWORK=off

go -C "$tools" mod download golang.org/x/vulndb
read -r dir version date < <(go -C "$tools" list -m \
	-f '{{.Dir}} {{.Version}} {{.Time.Format "2006-01-02T15:04:05Z"}}' golang.org/x/vulndb)

if [[ -f $out/index/db.json && $(cat "$out.version" 2>/dev/null) == "$version" ]]; then
	echo "vulndb: golang.org/x/vulndb@$version already built in $out"
	exit 0
fi
echo "vulndb: building from golang.org/x/vulndb@$version"

mkdir -p "$(dirname "$out")"
src=$(mktemp -d "$out.src.XXXXXX")
trap 'rm -rf "$src" "$out.tmp"' EXIT
mkdir "$src/data"
cp -R "$dir/data/osv" "$src/data/"
chmod -R u+w "$src"

# A private git: no user or system configuration, hooks or signing.
export GIT_CONFIG_GLOBAL=/dev/null GIT_CONFIG_NOSYSTEM=1
export GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date
git -C "$src" init -q -b main
git -C "$src" add data
git -C "$src" -c user.name=vulndb -c user.email=vulndb@localhost \
	commit -q -m "golang.org/x/vulndb@$version"

rm -rf "$out.tmp"
go -C "$tools" tool gendb -repo "$src" -out "$out.tmp"
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$version" >"$out.version"
echo "vulndb: $(find "$out/ID" -name '*.json' | wc -l) entries in $out"
