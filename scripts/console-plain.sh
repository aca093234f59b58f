#!/usr/bin/env bash
# Filters a serial console into plain lines, stdin to stdout, line by line.
#
# The VM's firmware and kernel write terminal control sequences to the
# console: ESC c resets the terminal, ESC[2J clears it, ESC[?7l turns line
# wrapping off (and it stays off after the VM is gone). None of them may
# reach the user's terminal: this removes every escape sequence (CSI, OSC
# and the two-byte ones), carriage returns and the other control
# characters but tab and newline.
set -euo pipefail
export LC_ALL=C
sed -u -E \
	-e $'s/\x1b\\[[0-?]*[ -/]*[@-~]//g' \
	-e $'s/\x1b\\][^\x07\x1b]*(\x07|\x1b\\\\)?//g' \
	-e $'s/\x1b[ -/]*[0-~]//g' |
	stdbuf -oL tr -d '\000-\010\013-\037\177'
