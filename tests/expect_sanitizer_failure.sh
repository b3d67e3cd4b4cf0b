#!/usr/bin/env bash
# Proves that a sanitizer build catches a deliberately broken kernel: runs
# BINARY with only the doctest test case TEST_NAME (normally skipped, hence
# --no-skip) and succeeds (exit 0) only if the run FAILS and its output
# contains PHRASE, e.g. "heap-buffer-overflow" under AddressSanitizer or
# "data race" under ThreadSanitizer. Otherwise it prints what it saw and
# exits 1. Usage:
#   tests/expect_sanitizer_failure.sh BINARY "TEST NAME" PHRASE
set -u

if [ "$#" -ne 3 ]; then
  echo "usage: $0 BINARY \"TEST NAME\" PHRASE" >&2
  exit 1
fi
binary=$1
test_name=$2
phrase=$3

if [ ! -x "$binary" ]; then
  echo "expect_sanitizer_failure: '$binary' is not an executable" >&2
  exit 1
fi

output=$("$binary" -tc="$test_name" --no-skip 2>&1)
status=$?

show_output() {
  echo "---- output of: $binary -tc=\"$test_name\" --no-skip (exit status $status) ----"
  printf '%s\n' "$output" | tail -n 60
  echo "----"
}

# doctest exits 0 when the filter matches nothing; insist the case ran.
if ! printf '%s\n' "$output" | grep -q "test cases: *[1-9]" &&
   ! printf '%s\n' "$output" | grep -qF -- "$phrase"; then
  show_output
  echo "expect_sanitizer_failure: FAILED: test case \"$test_name\" did not run" >&2
  exit 1
fi
if [ "$status" -eq 0 ]; then
  show_output
  echo "expect_sanitizer_failure: FAILED: expected \"$test_name\" to fail with \"$phrase\", but it exited 0" >&2
  exit 1
fi
if ! printf '%s\n' "$output" | grep -qF -- "$phrase"; then
  show_output
  echo "expect_sanitizer_failure: FAILED: \"$test_name\" failed (status $status) without reporting \"$phrase\"" >&2
  exit 1
fi
echo "expect_sanitizer_failure: ok: \"$test_name\" failed with \"$phrase\" (exit status $status)"
exit 0
