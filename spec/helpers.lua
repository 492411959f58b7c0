--- Real sockets and processes for the specs: listeners on port 0 (the
-- port is read back, never fixed), reserved ports that refuse, and child
-- processes on the same runtime.
local socket = require "socket"

local H = {}

H.lua = os.getenv("TPU_LUA") or "lua5.4"
H.cpath = os.getenv("TPU_CPATH") or "build/5.4/?.so"
H.root = os.getenv("PWD") or "."

--- The suite runs against the core built with -DTPU_PORTABLE (make
-- test-portable): every Linux-only path compiled out, so listen mode and
-- owner answer ENOTSUP; spec/platform_spec.lua holds what they answer.
H.portable = os.getenv("TPU_RUNTIME") == "portable"
H.NO_LISTEN_MODE = "the portable build has no listen mode (spec/platform_spec.lua)"
--- The listen-mode backends this core has: none on the portable build.
H.listen_backends = H.portable and {} or { "netlink", "proc" }
--- What a listen-mode check of a port in use answers: true, or nil
-- (ENOTSUP) on the portable build.
H.LISTENING = not H.portable or nil
-- What ends an explanation's text where the kernel's tables are not read.
H.NO_TABLES = H.portable and "; the kernel's socket tables are not read on this system" or ""
--- The modes UDP has on this core.
H.udp_modes = H.portable and { "bind" } or { "bind", "listen" }
--- The mode in which specs wait for the servers they start without a
-- packet reaching them (their logs stay clean): listen, or bind on the
-- portable build.
H.quiet_mode = H.portable and "bind" or "listen"

--- A listening socket on host (default 127.0.0.1), port 0 or the given
-- one. v6only (for an IPv6 host) sets IPV6_V6ONLY; LuaSocket's default is
-- true.
function H.listen(host, port, backlog, v6only)
  local s
  if v6only == nil then
    -- socket.bind sets SO_REUSEADDR, as servers do
    s = assert(socket.bind(host or "127.0.0.1", port or 0, backlog or 32))
  else
    s = assert(socket.tcp6())
    assert(s:setoption("ipv6-v6only", v6only))
    assert(s:setoption("reuseaddr", true))
    assert(s:bind(host, port or 0))
    assert(s:listen(backlog or 32))
  end
  local _, p = s:getsockname()
  local l = { port = tonumber(p), sock = s, close = function() s:close() end }
  --- Accepts and closes what has queued up, as a server would.
  function l.drain()
    s:settimeout(0)
    while true do
      local c = s:accept()
      if not c then return end
      c:close()
    end
  end
  return l
end

--- A port that refuses connections and that nobody else can take while
-- it is held: bound, not listening.
function H.reserve(host)
  host = host or "127.0.0.1"
  local s = host:find(":", 1, true) and socket.tcp6() or socket.tcp()
  assert(s:bind(host, 0))
  local _, p = s:getsockname()
  return { port = tonumber(p), sock = s, close = function() s:close() end }
end

--- For a describe block: before each spec a fresh listener l and a
-- refused port r on 127.0.0.1 (as from H.listen and H.reserve), closed
-- after it. The two tables stay the same; their fields are renewed.
function H.each_listener_and_refused(before_each, after_each)
  local l, r = {}, {}
  before_each(function()
    for k, v in pairs(H.listen("127.0.0.1")) do l[k] = v end
    for k, v in pairs(H.reserve("127.0.0.1")) do r[k] = v end
  end)
  after_each(function()
    l.close()
    r.close()
  end)
  return l, r
end

--- A port that was free a moment ago (for listeners started later by a
-- child process, which cannot inherit a reservation).
function H.free_port(host)
  local r = H.reserve(host)
  r.close()
  return r.port
end

--- A UDP socket bound on host (default 127.0.0.1), port 0 or the given
-- one, as a game server's. opts: reuseaddr, reuseport (set SO_REUSEADDR,
-- SO_REUSEPORT first, as some servers do), v6only (an IPv6 socket's IPV6_V6ONLY, default true),
-- peer = { host, port } (connect it, as a client's socket is).
function H.udp(host, port, opts)
  host, opts = host or "127.0.0.1", opts or {}
  local v6 = host:find(":", 1, true) ~= nil
  -- (udp4: socket.udp() makes its descriptor only when bound, too late
  -- for setoption)
  local s = assert(v6 and socket.udp6() or socket.udp4())
  if v6 then assert(s:setoption("ipv6-v6only", opts.v6only ~= false)) end
  if opts.reuseaddr then assert(s:setoption("reuseaddr", true)) end
  if opts.reuseport then assert(s:setoption("reuseport", true)) end
  assert(s:setsockname(host, port or 0))
  if opts.peer then assert(s:setpeername(opts.peer[1], opts.peer[2])) end
  local _, p = s:getsockname()
  return { port = tonumber(p), sock = s, close = function() s:close() end }
end

--- Whether this machine has IPv6 (::1 can be bound), asked with
-- LuaSocket so that specs of the core-less adapters can ask too.
function H.has_ipv6()
  local s = socket.udp6()
  local ok = s:setsockname("::1", 0)
  s:close()
  return ok == 1
end

--- A UDP port that was free a moment ago, on every address.
function H.free_udp_port()
  local u = H.udp("0.0.0.0")
  u.close()
  return u.port
end

--- A listener whose accept queue is full: further SYNs are dropped, so a
-- connect to it neither succeeds nor is refused.
function H.full_backlog()
  local l = H.listen("127.0.0.1", 0, 0)
  local clients = {}
  for _ = 1, 8 do
    local c = socket.tcp()
    c:settimeout(0)
    c:connect("127.0.0.1", l.port)
    clients[#clients + 1] = c
  end
  socket.sleep(0.05)
  local close = l.close
  l.close = function()
    for _, c in ipairs(clients) do c:close() end
    close()
  end
  return l
end

local function shell_quote(s)
  return "'" .. s:gsub("'", "'\\''") .. "'"
end
H.quote = shell_quote

--- The command line that runs Lua code on this runtime with the module on
-- its paths: this checkout's, or those of the copy at root with its core
-- at cpath (spec/readable.lua).
function H.lua_cmd(code, root, cpath)
  root = root or H.root
  local prelude = string.format("package.path = %q .. package.path; package.cpath = %q .. package.cpath;",
    root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;" .. root .. "/spec/?.lua;",
    (cpath or H.cpath) .. ";")
  return H.lua_exec() .. " -e " .. shell_quote(prelude .. code)
end

--- The command that starts this runtime's interpreter. Under the
-- sanitizers only Lua children get the preloaded runtimes (see H.run):
-- `ip`, `sh` and friends are not ours to leak-check.
function H.lua_exec()
  local preload = os.getenv("TPU_PRELOAD")
  if preload and preload ~= "" then
    return "env LD_PRELOAD=" .. shell_quote(preload) .. " " .. H.lua
  end
  return H.lua
end

--- Runs a shell command; returns its stdout and exit status.
function H.run(cmd)
  local f = assert(io.popen("unset LD_PRELOAD; " .. cmd .. "; echo \"~$?\"", "r"))
  local out = f:read("*a")
  f:close()
  local body, rc = out:match("^(.*)~(%d+)%s*$")
  return body, tonumber(rc)
end

--- Starts a shell command in the background; returns its pid.
function H.spawn(cmd)
  local f = assert(io.popen("unset LD_PRELOAD; (" .. cmd .. ") >/dev/null 2>&1 & echo $!", "r"))
  local pid = tonumber(f:read("*l"))
  f:close()
  return pid
end

function H.kill(pid)
  os.execute("kill " .. pid .. " 2>/dev/null; wait " .. pid .. " 2>/dev/null")
end

--- A child that starts listening on port after delay_s and holds it for
-- hold_s; with proto "udp", one that binds a UDP socket there.
function H.listen_later(port, delay_s, hold_s, host, proto)
  return H.spawn(H.lua_cmd(string.format(
    "local s = require 'socket'; s.sleep(%f); local l = require('helpers')[%q](%q, %d); s.sleep(%f)",
    delay_s, proto == "udp" and "udp" or "listen", host or "127.0.0.1", port, hold_s)))
end

--- A child process on this runtime that listens on a port of its own
-- choosing (proto "udp": binds a UDP socket) and reports "pid port" in a
-- file; returns pid, port and a function that stops it.
function H.child_listener(host, proto)
  local file = os.tmpname()
  local code = string.format([[
    local H = require 'helpers'
    local l = H[%q](%q)
    local f = io.open(%q, 'w'); f:write(H.pid(), ' ', l.port, '\n'); f:close()
    require('socket').sleep(30)]], proto == "udp" and "udp" or "listen", host or "127.0.0.1", file)
  local spawned = H.spawn(H.lua_cmd(code))
  local core = require "tcp_port_used.core"
  local deadline = core.now() + 10000
  local pid, port
  repeat
    local f = io.open(file)
    if f then
      pid, port = f:read("*n", "*n")
      f:close()
    end
    if not port then core.sleep(10) end
  until port or core.now() > deadline
  os.remove(file)
  assert(port, "the child did not start listening")
  return pid, port, function()
    H.kill(pid)
    H.kill(spawned)
  end
end

--- A child that listens on port now and stops after hold_s; returns once
-- the port accepts connections.
function H.listen_until(port, hold_s)
  local pid = H.spawn(H.lua_cmd(string.format(
    "local s = require 'socket'; local l = require('helpers').listen('127.0.0.1', %d); s.sleep(%f)",
    port, hold_s)))
  local core = require "tcp_port_used.core"
  local deadline = core.now() + 5000
  while core.connect("127.0.0.1", port) ~= true and core.now() < deadline do core.sleep(5) end
  return pid
end

--- Number of open file descriptors of this process, counted in-process
-- (lfs): a child listing /proc/PID/fd would race with popen closing its
-- end of the pipe, and count it or not. The directory handle that lfs
-- holds while reading is one more, every time. Garbage is collected first
-- (twice: finalizers run in the second cycle on 5.1), so that sockets
-- earlier code dropped without closing do not shift the count.
function H.fd_count()
  collectgarbage()
  collectgarbage()
  local lfs = require "lfs"
  local n = 0
  for name in lfs.dir("/proc/self/fd") do
    if name:match("^%d+$") then n = n + 1 end
  end
  return n
end

--- How many connections to port (the remote side) are in TIME_WAIT on
-- this machine: those a client that closed first keeps for a minute.
function H.time_wait_to(port)
  local n = 0
  for _, f in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local fh = io.open(f)
    if fh then
      for line in fh:lines() do
        local rport, st = line:match("^%s*%d+: %x+:%x+ %x+:(%x+) (%x%x)")
        if rport and tonumber(rport, 16) == port and st == "06" then n = n + 1 end
      end
      fh:close()
    end
  end
  return n
end

--- How many TIME_WAIT entries to listener l (a table from H.listen) n
-- probes closed with close leave: probe(close) is called n times, then
-- once with "graceful", and once l has closed its ends the entry of that
-- last one shows that all have settled. Returns the entries beyond it.
function H.time_waits_left(l, n, close, probe)
  local core = require "tcp_port_used.core"
  local before = H.time_wait_to(l.port)
  for _ = 1, n do probe(close) end
  probe("graceful")
  l.drain()
  local seen = H.time_wait_to(l.port) - before
  local deadline = core.now() + 5000
  while seen < 1 and core.now() < deadline do
    core.sleep(5)
    seen = H.time_wait_to(l.port) - before
  end
  assert(seen >= 1, "a probe closed gracefully left no TIME_WAIT entry")
  return seen - 1
end

--- What each open descriptor is ("3 -> socket:[123]"), for messages.
function H.fd_list()
  local lfs = require "lfs"
  local out = {}
  for name in lfs.dir("/proc/self/fd") do
    if name:match("^%d+$") then
      local a = lfs.symlinkattributes("/proc/self/fd/" .. name)
      out[#out + 1] = name .. " -> " .. tostring(a and a.target)
    end
  end
  table.sort(out)
  return table.concat(out, ", ")
end

local pid
function H.pid()
  if not pid then
    -- The shell that popen starts is a child of this process.
    local p = io.popen("echo $PPID")
    pid = tonumber(p:read("*l"))
    p:close()
  end
  return pid
end

--- Whether this process may make network namespaces (unshare -n).
function H.can_unshare()
  local _, rc = H.run("unshare -n true 2>/dev/null")
  return rc == 0
end

--- For a describe block whose specs all run in network namespaces: where
-- none can be made, registers one pending spec saying so (through busted's
-- `it`) and returns false.
function H.netns_or_pending(it)
  if H.can_unshare() then return true end
  it("(runs in network namespaces)", function()
    pending("no network namespaces here (unshare -n)")
  end)
  return false
end

--- The contents of the file at path, or "" where it cannot be read.
function H.slurp(path)
  local f = io.open(path)
  if not f then return "" end
  local s = f:read("*a")
  f:close()
  return s
end

--- Runs Lua code in a fresh network namespace with lo up (both loopbacks
-- work, names do not resolve, nothing leaves the machine).
function H.lua_in_netns(code, setup)
  return H.run("unshare -n sh -c " .. shell_quote("ip link set lo up; " .. (setup or "") ..
    H.lua_cmd(code)) .. " 2>&1")
end

--- Runs script in a real headless nvim; the core is the LuaJIT build
-- unless without_core. Returns its output and exit status.
function H.nvim(script, without_core)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(string.format("package.path = %q .. package.path\n",
    H.root .. "/lua/?.lua;" .. H.root .. "/lua/?/init.lua;"))
  if without_core then
    f:write('package.preload["tcp_port_used.core"] = function() error("not built here") end\n')
  else
    f:write(string.format("package.cpath = %q .. package.cpath\n", H.root .. "/build/jit/?.so;"))
  end
  -- an error must end nvim with a status, not leave it at a prompt
  f:write("local ok, err = xpcall(function()\n", script,
    "\nend, debug.traceback)\nif not ok then io.stderr:write(err, '\\n'); vim.cmd('cquit 3') end\n")
  f:close()
  local out, rc = H.run("timeout 60 nvim --headless -u NONE -i NONE -c " ..
    H.quote("luafile " .. path) .. " -c 'qa!' 2>&1 </dev/null")
  os.remove(path)
  return out, rc
end

--- Polls f every 10 ms until it returns a value, and returns it; raises
-- naming what after s seconds (default 20).
function H.await(what, f, s)
  local core = require "tcp_port_used.core"
  local deadline = core.now() + (s or 20) * 1000
  while true do
    local v = f()
    if v then return v end
    if core.now() >= deadline then error("timed out waiting for " .. what, 2) end
    core.sleep(10)
  end
end

return H
