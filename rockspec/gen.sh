#!/bin/sh
# Regenerates rockspec/sluice-dev-1.rockspec from the Lua files in lua/ and plugins/.
cd "$(dirname "$0")/.." || exit 1
{
cat <<'HEAD'
-- The Lua part of Sluice as a rock. The C host (build/sluice) is built by make; this maps the
-- framework modules (lua/) and the bundled plugins (plugins/). Regenerate with rockspec/gen.sh.
package = "sluice"
version = "dev-1"
source = { url = "git+file://." }
description = {
    summary = "Sluice AI gateway: Lua framework and bundled plugins",
    license = "Apache-2.0",
}
dependencies = { "lua >= 5.1", "lua-cjson" }
build = {
    type = "builtin",
    modules = {
HEAD
find lua -name '*.lua' | sort | while read -r f; do
    m=$(echo "$f" | sed -e 's|^lua/||' -e 's|\.lua$||' -e 's|/init$||' -e 's|/|.|g')
    printf '        ["%s"] = "%s",\n' "$m" "$f"
done
find plugins -name '*.lua' 2>/dev/null | sort | while read -r f; do
    m=$(echo "$f" | sed -e 's|\.lua$||' -e 's|/|.|g')
    printf '        ["sluice.%s"] = "%s",\n' "$m" "$f"
done
cat <<'TAIL'
    },
}
TAIL
} > rockspec/sluice-dev-1.rockspec
