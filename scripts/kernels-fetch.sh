#!/usr/bin/env bash
# Fetches a Debian cloud kernel for the kernel matrix and prints the
# directory it is unpacked in (boot/vmlinuz-*, lib/modules/*).
#
#   scripts/kernels-fetch.sh 5.10|6.1|6.12
#
# The newest version of the series that apt knows (and its mirror serves) is
# picked at run time:
#   5.10  linux-image-5.10.0-N-cloud-amd64-unsigned      (bullseye, bullseye-security)
#   6.1   linux-image-6.1.0-N-cloud-amd64-unsigned       (bookworm)
#   6.12  linux-image-6.12.N+deb12-cloud-amd64-unsigned  (bookworm)
# The package is downloaded (apt-get download) and unpacked with dpkg-deb -x,
# never installed, into $TCPSPAN_KERNEL_CACHE (default
# ~/.cache/tcpspan/kernels), where later runs find it. Bullseye is not in
# this machine's apt sources, so 5.10 goes through a private apt
# configuration (its own sources list, state and cache under the cache
# directory); the system's apt sources are never modified. When apt cannot
# be reached, the newest kernel of the series already in the cache is used.
set -euo pipefail

series=${1:?usage: kernels-fetch.sh 5.10|6.1|6.12}
cache=${TCPSPAN_KERNEL_CACHE:-$HOME/.cache/tcpspan/kernels}
mkdir -p "$cache"

log() { echo "kernels-fetch: $*" >&2; }

apt_opts=()
case "$series" in
5.10)
	pattern='^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$'
	apt_dir=$cache/apt-bullseye
	mkdir -p "$apt_dir/state/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/parts"
	cat >"$apt_dir/sources.list" <<-EOF
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bullseye main
		deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bullseye-security main
	EOF
	# An empty sourceparts directory keeps the system's sources.list.d
	# (bookworm) out of this configuration.
	apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=$apt_dir/parts"
		-o "Dir::State=$apt_dir/state" -o "Dir::Cache=$apt_dir/cache" -o "APT::Architecture=amd64")
	# Refresh the private index at most once a day.
	if [ -z "$(find "$apt_dir/state/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
		log "updating the private bullseye index in $apt_dir"
		apt-get "${apt_opts[@]}" -q update >&2 || log "apt-get update (bullseye) failed"
	fi
	;;
6.1) pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
*)
	echo "kernels-fetch: unknown series $series (5.10, 6.1, 6.12)" >&2
	exit 2
	;;
esac

# Newest first. A mirror may list a version whose file it does not serve
# (here, bullseye-security lists kernels its mirror answers 404 for): then the
# next older one is tried, up to eight.
candidates=$(apt-cache "${apt_opts[@]}" search --names-only "$pattern" 2>/dev/null | awk '{print $1}' | sort -rV | head -8 || true)
if [ -z "$candidates" ] && [ ${#apt_opts[@]} -eq 0 ] && [ "$(id -u)" -eq 0 ]; then
	# The system's bookworm index may never have been fetched on this machine.
	log "no $series kernel in apt's index; running apt-get update"
	apt-get -q update >&2 || true
	candidates=$(apt-cache search --names-only "$pattern" 2>/dev/null | awk '{print $1}' | sort -rV | head -8 || true)
fi
for pkg in $candidates; do
	version=$(apt-cache "${apt_opts[@]}" show "$pkg" | awk '/^Version:/ {print $2}' | sort -V | tail -1)
	dir=$cache/$pkg
	if [ -f "$dir/.version" ] && [ "$(cat "$dir/.version")" = "$version" ]; then
		echo "$dir"
		exit 0
	fi
	# A version the mirror answered 404 for is not retried for a day.
	if [ -n "$(find "$cache/.unavailable" -mtime -1 2>/dev/null)" ] && grep -qx "$pkg=$version" "$cache/.unavailable"; then
		continue
	fi
	log "downloading $pkg $version"
	tmp=$(mktemp -d "$cache/.dl.XXXXXX")
	if (cd "$tmp" && apt-get "${apt_opts[@]}" -o APT::Sandbox::User=root -q download "$pkg=$version" >&2); then
		rm -rf "$dir"
		mkdir -p "$dir"
		dpkg-deb -x "$tmp"/*.deb "$dir"
		rm -rf "$tmp"
		echo "$version" >"$dir/.version"
		echo "$dir"
		exit 0
	fi
	rm -rf "$tmp"
	[ -n "$(find "$cache/.unavailable" -mtime -1 2>/dev/null)" ] || : >"$cache/.unavailable"
	echo "$pkg=$version" >>"$cache/.unavailable"
	log "download of $pkg $version failed; trying an older one"
done

# Offline, or nothing downloadable: the newest of this series in the cache.
dir=$(ls -d "$cache"/linux-image-* 2>/dev/null | grep -E "/${pattern#^}" | sort -V | tail -1 || true)
if [ -z "$dir" ] || [ ! -f "$dir/.version" ]; then
	log "no $series kernel could be downloaded, and none is cached"
	exit 1
fi
log "using the cached $(basename "$dir") $(cat "$dir/.version")"
echo "$dir"
