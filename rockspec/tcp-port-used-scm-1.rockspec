rockspec_format = "3.0"
package = "tcp-port-used"
version = "scm-1"
source = {
   url = "git+https://example.invalid/tcp-port-used.git",
}
description = {
   summary = "Is something listening on this TCP port? Wait until it is, or until it is free.",
   detailed = [[
      A C Lua module for startup scripts, test harnesses, OpenResty and Neovim:
      check a TCP port (connect, bind or both), and wait until it is used or
      free, or until the server behind it is ready (HTTP, Redis, PostgreSQL,
      your own exchange; TCP or Unix-domain sockets), yielding instead of blocking inside coroutines, ngx.sleep in
      OpenResty and luv timers in Neovim. Lua 5.1 to 5.5 and LuaJIT.
   ]],
   homepage = "https://example.invalid/tcp-port-used",
   issues_url = "https://example.invalid/tcp-port-used/issues",
   license = "MIT",
   labels = { "network", "tcp", "port", "wait", "openresty", "neovim" },
}
dependencies = {
   "lua >= 5.1",
}
-- `luarocks test` runs the busted suite (.busted at the top of the checkout).
test = {
   type = "busted",
}
-- The C core builds on POSIX systems: Linux (glibc, musl), macOS and the
-- BSDs (listen mode and owner need Linux, and say so elsewhere). Not on
-- Windows: there, tcp_port_used.uv runs on luv without the core (README).
supported_platforms = { "linux", "macosx", "freebsd", "openbsd", "netbsd" }
build = {
   type = "builtin",
   modules = {
      ["tcp_port_used"] = "lua/tcp_port_used/init.lua",
      ["tcp_port_used.args"] = "lua/tcp_port_used/args.lua",
      ["tcp_port_used.loop"] = "lua/tcp_port_used/loop.lua",
      ["tcp_port_used.sched"] = "lua/tcp_port_used/sched.lua",
      ["tcp_port_used.ngx"] = "lua/tcp_port_used/ngx.lua",
      ["tcp_port_used.uv"] = "lua/tcp_port_used/uv.lua",
      ["tcp_port_used.adapter"] = "lua/tcp_port_used/adapter.lua",
      ["tcp_port_used.pack"] = "lua/tcp_port_used/pack.lua",
      ["tcp_port_used.many"] = "lua/tcp_port_used/many.lua",
      ["tcp_port_used.free"] = "lua/tcp_port_used/free.lua",
      ["tcp_port_used.listen"] = "lua/tcp_port_used/listen.lua",
      ["tcp_port_used.procs"] = "lua/tcp_port_used/procs.lua",
      ["tcp_port_used.supervise"] = "lua/tcp_port_used/supervise.lua",
      ["tcp_port_used.hosts"] = "lua/tcp_port_used/hosts.lua",
      ["tcp_port_used.explain"] = "lua/tcp_port_used/explain.lua",
      ["tcp_port_used.tables"] = "lua/tcp_port_used/tables.lua",
      ["tcp_port_used.why"] = "lua/tcp_port_used/why.lua",
      ["tcp_port_used.words"] = "lua/tcp_port_used/words.lua",
      ["tcp_port_used.verdict"] = "lua/tcp_port_used/verdict.lua",
      ["tcp_port_used.policy"] = "lua/tcp_port_used/policy.lua",
      ["tcp_port_used.probe"] = "lua/tcp_port_used/probe.lua",
      ["tcp_port_used.transport.core"] = "lua/tcp_port_used/transport/core.lua",
      ["tcp_port_used.transport.stream"] = "lua/tcp_port_used/transport/stream.lua",
      ["tcp_port_used.transport.uv"] = "lua/tcp_port_used/transport/uv.lua",
      ["tcp_port_used.transport.ngx"] = "lua/tcp_port_used/transport/ngx.lua",
      ["tcp_port_used.ready"] = "lua/tcp_port_used/ready.lua",
      ["tcp_port_used.ready.http"] = "lua/tcp_port_used/ready/http.lua",
      ["tcp_port_used.ready.redis"] = "lua/tcp_port_used/ready/redis.lua",
      ["tcp_port_used.ready.postgres"] = "lua/tcp_port_used/ready/postgres.lua",
      ["tcp_port_used.version"] = "lua/tcp_port_used/version.lua",
      ["tcp_port_used.api"] = "lua/tcp_port_used/api.lua",
      ["tcp_port_used.cli_help"] = "lua/tcp_port_used/cli_help.lua",
      ["tcp_port_used.core"] = {
         sources = { "csrc/core.c" },
      },
      ["tcp_port_used.exec"] = {
         sources = { "csrc/exec.c" },
      },
   },
   install = {
      bin = {
         ["tcp-port-used"] = "bin/tcp-port-used",
      },
   },
}
