# Shared by scripts/bench-index.sh and scripts/bench-resolve.sh (sourced):
# the host's bookworm main Packages index copied into a file: repository
# under WORK, and a private apt configuration that reads only that
# repository with an empty dpkg status (the host's apt is not touched).

# bookworm_index WORK: copies the index to WORK/repo/...; sets $index.
bookworm_index() {
  local work=$1 lists=/var/lib/apt/lists
  local base=$lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages
  mkdir -p "$work/repo/dists/bookworm/main/binary-amd64"
  index=$work/repo/dists/bookworm/main/binary-amd64/Packages
  if [ -f "$base" ]; then cp "$base" "$index"
  elif [ -f "$base.lz4" ]; then lz4 -dcq "$base.lz4" >"$index"
  elif [ -f "$base.xz" ]; then xz -dc "$base.xz" >"$index"
  elif [ -f "$base.gz" ]; then gzip -dc "$base.gz" >"$index"
  else
    echo "no bookworm main Packages under $lists: run apt-get update" >&2
    exit 1
  fi
  echo "== index: $(grep -c '^Package:' "$index") packages, $(du -h "$index" | cut -f1)"
}

# private_apt WORK: a Release for WORK/repo, apt state under WORK/apt
# ($apt), APT_CONFIG exported, lists fetched (`apt-get update`).
private_apt() {
  local work=$1 size sha
  size=$(stat -c %s "$index")
  sha=$(sha256sum "$index" | cut -d' ' -f1)
  cat >"$work/repo/dists/bookworm/Release" <<REL
Suite: bookworm
Codename: bookworm
Date: Sat, 10 Jun 2023 00:00:00 UTC
Architectures: amd64
Components: main
SHA256:
 $sha $size main/binary-amd64/Packages
REL
  apt=$work/apt
  mkdir -p "$apt"/{conf.d,sources.d,prefs.d,state/lists/partial,cache/archives/partial}
  : >"$apt/status"
  echo "deb [trusted=yes] file:$work/repo bookworm main" >"$apt/sources.list"
  cat >"$apt/apt.conf" <<CONF
Dir::Etc::Parts "$apt/conf.d";
Dir::Etc::SourceList "$apt/sources.list";
Dir::Etc::SourceParts "$apt/sources.d";
Dir::Etc::PreferencesParts "$apt/prefs.d";
Dir::State "$apt/state";
Dir::State::status "$apt/status";
Dir::Cache "$apt/cache";
Dir::Cache::pkgcache "$apt/cache/pkgcache.bin";
Dir::Cache::srcpkgcache "$apt/cache/srcpkgcache.bin";
Debug::NoLocking "true";
APT::Architecture "amd64";
APT::Architectures { "amd64"; };
APT::Sandbox::User "root";
Acquire::Languages "none";
CONF
  export APT_CONFIG=$apt/apt.conf LC_ALL=C
  apt-get -qq update
}
