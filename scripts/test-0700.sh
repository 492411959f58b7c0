#!/bin/sh
# The suite from a checkout that other users cannot read: clones this
# repository's HEAD into a fresh mode-0700 directory (as /root is in a
# container), builds the cores there and runs the specs whose servers run
# as other users or read the checkout (nginx's workers, PostgreSQL as user
# postgres, owner, the differential table) on Lua 5.4. Ends with busted's
# summary line; exits non-zero when a spec fails.
#   extra busted arguments: BUSTED_ARGS (default: the subset below)
set -u
cd "$(dirname "$0")/.."

SPECS="spec/ngx_spec.lua spec/differential_spec.lua spec/postgres_spec.lua
spec/ready_postgres_spec.lua spec/ready_ngx_spec.lua spec/ready_http_spec.lua
spec/owner_spec.lua"

base=$(mktemp -d /tmp/tpu-0700.XXXXXX) || exit 2
trap 'rm -rf "$base"' EXIT INT TERM
chmod 700 "$base"
dir=$base/tcp-port-used
git clone --quiet --no-checkout "$PWD" "$dir" || exit 2
git -C "$dir" checkout --quiet --detach "$(git rev-parse HEAD)" || exit 2
echo "test-0700: $(git rev-parse --short HEAD) in $dir ($(stat -c %a "$base") $(stat -c %U "$base"))"
cd "$dir" || exit 2
make --quiet build/5.4/tcp_port_used/core.so build/5.4/tcp_port_used/exec.so \
  build/jit/tcp_port_used/core.so build/test/sigstorm.so >/dev/null || exit 2
# shellcheck disable=SC2086
BUSTED_ARGS="${BUSTED_ARGS:-$(echo $SPECS)}" sh scripts/test.sh 5.4
