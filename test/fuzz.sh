#!/usr/bin/env bash
# Runs every fuzz target in the module for a short time: 5 seconds each by
# default, or the duration given as the first argument (such as 1m). One
# worker, so that a busy machine starves no fuzzing process. The seeds alone
# run with go test; this explores beyond them. A failing input is saved under
# the package's testdata/fuzz, where go test replays it from then on.
#
# Go 1.26's fuzzing coordinator can report "context deadline exceeded" when
# -fuzztime runs out while a worker is busy (golang/go#75804, fixed in Go
# 1.27). That report comes with no failing input, so a run that ends with it
# and saved none is counted as a clean stop; any failure that saved an input,
# or any other failure, fails the script.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-5s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
ran=0
count() { if [ -d "$1" ]; then find "$1" -type f | wc -l; else echo 0; fi; }
while IFS=: read -r file target; do
	pkg=$(dirname "$file")
	corpus="$pkg/testdata/fuzz/$target"
	before=$(count "$corpus")
	echo "fuzz: $target in $pkg for $fuzztime"
	if ! go test "$pkg" -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -parallel 1 2>&1 | tee "$log"; then
		after=$(count "$corpus")
		if [ "$after" -eq "$before" ] && grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "fuzz: $target stopped at the deadline with no failing input (golang/go#75804); counted as clean"
		else
			echo "fuzz: $target failed" >&2
			exit 1
		fi
	fi
	ran=$((ran + 1))
done < <(grep -rhoE --include='*_test.go' -H '^func (Fuzz[A-Za-z0-9_]+)\(' . | grep -v '^./charts/' | sed -E 's/^(.*):func (Fuzz[A-Za-z0-9_]+)\($/\1:\2/' | sort)
if [ "$ran" -eq 0 ]; then
	echo "fuzz: no fuzz target found" >&2
	exit 1
fi
echo "fuzz: $ran targets ran for $fuzztime each"
