#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time: 5 seconds each by
# default, or the duration given as the first argument (such as 1m). One
# worker, so that a busy machine starves no fuzzing process. The seeds alone
# run with go test; this explores beyond them. A failing input is saved under
# the package's testdata/fuzz, where go test replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-5s}
found=0
while IFS=: read -r file target; do
	pkg=$(dirname "$file")
	echo "fuzz: $target in $pkg for $fuzztime"
	go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 1
	found=$((found + 1))
done < <(grep -rhoE --include='*_test.go' -H '^func (Fuzz[A-Za-z0-9_]+)\(' . | grep -v '^./charts/' | sed -E 's/^(.*):func (Fuzz[A-Za-z0-9_]+)\($/\1:\2/' | sort)
if [ "$found" -eq 0 ]; then
	echo "fuzz: no fuzz target found" >&2
	exit 1
fi
echo "fuzz: $found targets ran for $fuzztime each"
