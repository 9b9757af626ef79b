#!/usr/bin/env bash
# Runs every fuzz target of the workspace, one after the other, each for the
# time given as the only argument (a `go test -fuzztime` value: 10s, 5m, 1000x).
#
# Targets are found, never listed by hand: the packages of every go.work module
# whose test files declare a Fuzz function, confirmed by `go test -list`. A
# target fails the run when it has no seed corpus committed under
# testdata/fuzz/<target>, or when fuzzing finds an input that makes it fail;
# go writes that input into the same directory, to be committed with the fix.
set -euo pipefail

fuzztime=${1:?usage: fuzz.sh FUZZTIME}
cd "$(dirname "$0")/.."
root=$PWD

# Packages with a Fuzz function in their tests; a grep spares building the
# test binary of every other package.
packages=$(go list -f '{{.ImportPath}} {{.Dir}}{{range .TestGoFiles}} {{.}}{{end}}{{range .XTestGoFiles}} {{.}}{{end}}' \
	$(go list -m -f '{{.Dir}}/...'))
declare -A dirs
candidates=()
while read -r pkg dir files; do
	[[ -n $files ]] || continue
	dirs[$pkg]=$dir
	# shellcheck disable=SC2086 # files is a list of names without spaces
	if (cd "$dir" && grep -q '^func Fuzz' $files); then
		candidates+=("$pkg")
	fi
done <<<"$packages"

if ((${#candidates[@]} == 0)); then
	echo "fuzz: no fuzz targets"
	exit 0
fi

# `go test -list` names each package's targets. Given a -fuzz that matches
# nothing, it builds the instrumented test binary that fuzzing then reuses.
# (go vet runs in `make lint-go`; here it would only cost time.)
targets=()
for pkg in "${candidates[@]}"; do
	if ! listing=$(go test -vet=off -list '^Fuzz' -fuzz '^$' "$pkg" 2>&1); then
		echo "$listing"
		exit 1
	fi
	while read -r name _; do
		if [[ $name == Fuzz* ]]; then
			targets+=("$pkg $name")
		fi
	done <<<"$listing"
done

failed=()
for target in "${targets[@]}"; do
	read -r pkg name <<<"$target"
	corpus=${dirs[$pkg]}/testdata/fuzz/$name
	if [[ -z $(ls -A "$corpus" 2>/dev/null) ]]; then
		echo "fuzz: $pkg $name has no seed corpus in ${corpus#"$root"/}"
		failed+=("$pkg $name: no seed corpus")
		continue
	fi
	echo "fuzz: $pkg $name for $fuzztime"
	if ! go test -vet=off -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg"; then
		failed+=("$pkg $name")
	fi
done

echo "fuzz: ${#targets[@]} targets, ${#failed[@]} failed"
if ((${#failed[@]} > 0)); then
	printf 'fuzz: FAILED %s\n' "${failed[@]}"
	exit 1
fi
