#!/bin/sh
# `apt-install PACKAGE...` for the build stages of localcluster/kindnode/Dockerfile: from the Debian
# archives of the build machine when the `apt-sources` secret is mounted, else from the image's sources.
set -eu
opts=""
if [ -s /run/secrets/apt-sources.list ]; then
  opts="-o Dir::Etc::SourceList=/run/secrets/apt-sources.list -o Dir::Etc::SourceParts=/dev/null"
fi
# shellcheck disable=SC2086 # opts is a list of options
apt-get $opts update
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive apt-get $opts install -y --no-install-recommends "$@"
apt-get clean -y
rm -rf /var/lib/apt/lists/* /var/log/apt /usr/share/doc/* /usr/share/man/*
