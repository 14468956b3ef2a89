#!/usr/bin/env bash
# make-base-image.sh - build the images `debian:12` and `debian:12-slim` locally, for machines
# whose Docker engine cannot pull from a registry, so that the repository's Dockerfile and
# docker-compose.yml work there unchanged.
#
#   tools/docker/make-base-image.sh [--force]
#
# The root filesystem comes from debootstrap (Debian bookworm, variant minbase) and is turned
# into images with `docker import`:
#   debian:12        minbase, apt sources as in Debian's official image (bookworm,
#                    bookworm-updates, bookworm-security)
#   debian:12-slim   the same, without /usr/share/doc, man pages and translations, and with a
#                    dpkg configuration that keeps later installs from adding them back
# Both carry the label org.strata.base=debootstrap, so they can be told from the official ones.
#
# Without --force, an image that is already there (built here or pulled) is kept and only a
# missing one is made: the first run costs a debootstrap (about 2-3 minutes), later runs return
# at once. --force rebuilds both. Two runs at once take turns (flock on
# $TMPDIR/strata-make-base-image.lock), so the second finds the images made.
#
# Needs root (debootstrap; sudo is used when not root) and Debian's package mirror; debootstrap
# is installed with apt-get when missing. Environment:
#   STRATA_DEBIAN_MIRROR  mirror URL (default http://deb.debian.org/debian)
#   STRATA_DEBIAN_SECURITY  security mirror URL (default http://deb.debian.org/debian-security)
#   TMPDIR                where the root filesystem is made (default /var/tmp); it is removed
set -euo pipefail

suite=bookworm
mirror=${STRATA_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${STRATA_DEBIAN_SECURITY:-http://deb.debian.org/debian-security}
full_tag=debian:12
slim_tag=debian:12-slim
label=org.strata.base=debootstrap

force=false
case "${1:-}" in
--force) force=true ;;
"") ;;
-h | --help)
    sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "make-base-image: unknown argument '$1' (see --help)" >&2
    exit 2
    ;;
esac

log() { echo "make-base-image: $*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

docker info >/dev/null 2>&1 || die "no Docker engine answers (docker info failed)"

# Two runs at once (a test and a demo) would debootstrap twice: the second waits for the first
# and then finds the images made.
lock=${TMPDIR:-/var/tmp}/strata-make-base-image.lock
exec 9>>"$lock"
if command -v flock >/dev/null 2>&1; then
    flock -w 1200 9 || die "another make-base-image.sh holds $lock"
fi

# Which tags to (re)make: without --force only the missing ones, so that an image pulled from a
# registry is never replaced by a local one.
want_full=$force
want_slim=$force
have_image "$full_tag" || want_full=true
have_image "$slim_tag" || want_slim=true
if ! $want_full && ! $want_slim; then
    log "$full_tag and $slim_tag are present; nothing to do (--force rebuilds them)"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
    # Another apt may be running (a build installing its packages): wait for its lock rather
    # than fail. The package lists are usually fresh (tools/dev updates them), so the install is
    # tried first and `apt-get update` only when it fails; an index that cannot be fetched (a
    # third-party source) is only a warning.
    log "installing debootstrap"
    apt_install() {
        as_root env DEBIAN_FRONTEND=noninteractive \
            apt-get -o DPkg::Lock::Timeout=300 install -y -qq debootstrap >/dev/null 2>&1
    }
    if ! apt_install; then
        as_root apt-get -o DPkg::Lock::Timeout=300 update -qq ||
            log "apt-get update reported errors; trying the install anyway"
        apt_install || die "could not install debootstrap (apt-get install debootstrap)"
    fi
fi
debootstrap=$(command -v debootstrap || echo /usr/sbin/debootstrap)

work=$(mktemp -d "${TMPDIR:-/var/tmp}/strata-base.XXXXXX")
root=$work/rootfs

# debootstrap mounts /proc and /sys inside the tree while it installs; if it stopped halfway
# they may still be mounted, and removing the tree must never reach into them.
cleanup() {
    if [ -d "$root" ]; then
        awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
            while read -r m; do as_root umount -l "$m" 2>/dev/null || true; done
    fi
    as_root rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

log "debootstrap $suite (minbase) from $mirror into $root"
start=$SECONDS
as_root "$debootstrap" --variant=minbase --components=main "$suite" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || {
    tail -20 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above)"
}
log "debootstrap took $((SECONDS - start)) s"

# What Debian's official image sets up: its apt sources, apt caches cleaned after every
# install, no translations downloaded, dpkg without fsync, and no host identity baked in.
as_root rm -f "$root/etc/apt/sources.list"
as_root tee "$root/etc/apt/sources.list.d/debian.sources" >/dev/null <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
as_root tee "$root/etc/apt/apt.conf.d/docker-clean" >/dev/null <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
as_root tee "$root/etc/apt/apt.conf.d/docker-no-languages" >/dev/null <<'EOF'
Acquire::Languages "none";
EOF
as_root tee "$root/etc/apt/apt.conf.d/docker-gzip-indexes" >/dev/null <<'EOF'
Acquire::GzipIndexes "true";
EOF
as_root tee "$root/etc/apt/apt.conf.d/docker-autoremove-suggests" >/dev/null <<'EOF'
Apt::AutoRemove::SuggestsImportant "false";
EOF
# An image build that fails halfway is thrown away anyway: dpkg need not fsync each file, which
# on fuse-overlayfs is most of the time an install takes.
as_root tee "$root/etc/dpkg/dpkg.cfg.d/docker-apt-speedup" >/dev/null <<'EOF'
force-unsafe-io
EOF
as_root sh -c "rm -rf '$root'/var/cache/apt/archives/*.deb '$root'/var/lib/apt/lists/* \
    '$root'/var/log/*.log '$root'/tmp/* '$root'/var/tmp/*; \
    : > '$root/etc/machine-id'; rm -f '$root/etc/hostname' '$root/etc/resolv.conf'"

import() {
    local tag=$1
    as_root tar --numeric-owner --xattrs -C "$root" -c . |
        docker import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'CMD ["bash"]' \
            --change "LABEL $label" \
            - "$tag" >/dev/null || die "docker import $tag failed"
    log "imported $tag ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
}

if $want_full; then
    import "$full_tag"
fi

# The slim variant: what debian:12-slim leaves out, and the dpkg filter that keeps it out.
as_root tee "$root/etc/dpkg/dpkg.cfg.d/docker" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
as_root find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
as_root find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
as_root sh -c "rm -rf '$root'/usr/share/man/* '$root'/usr/share/groff/* '$root'/usr/share/info/* \
    '$root'/usr/share/lintian/* '$root'/usr/share/linda/*; \
    find '$root/usr/share/locale' -mindepth 1 -maxdepth 1 -not -name locale.alias \
        -exec rm -rf {} +"

if $want_slim; then
    import "$slim_tag"
fi
log "done in $((SECONDS - start)) s"
