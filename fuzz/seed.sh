#!/usr/bin/env bash
# Seeds both fuzz corpora with real messages: the RFC 4475 torture tests and the RFC 5118 IPv6
# messages from ../shared/reference (read there, not copied into the repository).
set -euo pipefail
cd "$(dirname "$0")"
ref=../../shared/reference
for target in scan rewrite; do
  mkdir -p "corpus/$target"
  for f in "$ref"/rfc4475/*.dat "$ref"/rfc5118/*; do
    case "$(basename "$f")" in INDEX.tsv | README.md | SHA256SUMS) continue ;; esac
    cp "$f" "corpus/$target/$(basename "$(dirname "$f")")-$(basename "$f")"
  done
done
echo "seeded: $(ls corpus/scan | wc -l) messages per target"
