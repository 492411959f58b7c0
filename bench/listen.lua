--- Listen mode against connect mode, in one run (absolute times vary 2x
-- between machines and days; only the ratios count):
--   * one check of an open loopback port: listen mode, connect mode and
--     the raw C connect loop, with few listening sockets on the machine
--     and with 500 more; and a UDP listen-mode check of a bound UDP port
--     (500 more UDP sockets in the second round), which must cost no more
--     than the TCP one;
--   * 1024 ports: listen mode (one kernel query per family) next to
--     check_many in connect mode;
--   * the /proc fallback, for scale.
-- `make bench` runs it against a rock installed by `luarocks make`
-- (scripts/bench.sh); from the build tree, after `make all build/bench/raw_connect`:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/listen.lua
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"
local socket = require "socket"

local RAW = "build/bench/raw_connect"
local N = tonumber(os.getenv("N")) or 20000
print("module: " .. (os.getenv("TPU_BENCH_FROM") or "the build tree (lua/, build/5.4/)"))

local function ns_per_op(n, fn)
  fn()
  local t0 = core.now()
  for _ = 1, n do fn() end
  return (core.now() - t0) * 1e6 / n
end

local function raw(args)
  local f = assert(io.popen(RAW .. " " .. args))
  local out = f:read("*a")
  f:close()
  return assert(tonumber(out:match("([%d%.]+)")), "raw_connect said: " .. out)
end

-- The open port: raw_connect accepts and closes in a process of its own,
-- so the accept queue never fills.
local server = assert(io.popen("echo $$; exec " .. RAW .. " serve 127.0.0.1"))
local server_pid = assert(tonumber(server:read("*l")))
local port = assert(tonumber(server:read("*l")), "raw_connect serve printed no port")

local function row(name, ns, base, target)
  print(string.format("  %-44s %10.0f ns/op  %5.2fx connect check%s", name, ns, ns / base,
    target and "  (target " .. target .. ")" or ""))
end

-- A game server's UDP port (socket.udp4: socket.udp makes its descriptor
-- only once bound, and any local port will do).
local function udp_socket()
  local u = assert(socket.udp4())
  assert(u:setsockname("127.0.0.1", 0))
  return u
end
local udp = udp_socket()
local udp_port = tonumber((select(2, udp:getsockname())))

local function single(label)
  print(label)
  local connect = ns_per_op(N, function()
    assert(tpu.check { port = port, host = "127.0.0.1", close = "reset" } == true)
  end)
  local c_loop = raw("connect 127.0.0.1 " .. port .. " " .. N)
  local lis = ns_per_op(N, function() assert(tpu.check { port = port, mode = "listen" } == true) end)
  local lis4 = ns_per_op(N, function()
    assert(tpu.check { port = port, host = "127.0.0.1", mode = "listen" } == true)
  end)
  local exact = ns_per_op(N, function() assert(core.listen_exact("127.0.0.1", port) == true) end)
  local ulis = ns_per_op(N, function()
    assert(tpu.check { port = udp_port, proto = "udp", mode = "listen" } == true)
  end)
  local ulis4 = ns_per_op(N, function()
    assert(tpu.check { port = udp_port, host = "127.0.0.1", proto = "udp", mode = "listen" } == true)
  end)
  local ubind = ns_per_op(N, function()
    assert(tpu.check { port = udp_port, host = "127.0.0.1", proto = "udp" } == true)
  end)
  row("connect check, 127.0.0.1 (close = reset)", connect, connect)
  row("raw C socket+connect+close loop", c_loop, connect)
  row("listen check, host omitted (127.0.0.1, ::1)", lis, connect, "<= 0.25x")
  row("listen check, 127.0.0.1", lis4, connect, "<= 0.25x")
  row("core.listen_exact, 127.0.0.1", exact, connect)
  row("UDP listen check, host omitted", ulis, connect)
  row("UDP listen check, 127.0.0.1", ulis4, connect)
  row("UDP bind check, 127.0.0.1 (held)", ubind, connect)
  print(string.format("  UDP listen check / TCP listen check, 127.0.0.1: %.2fx", ulis4 / lis4))
  return connect
end

local function udp_sockets()
  return #assert(core.listeners(1, 65535, "netlink", "udp"))
end

single("one open port, " .. #assert(core.listeners(1, 65535)) .. " listening sockets (" ..
  udp_sockets() .. " UDP) on the machine")

local extra = {}
for i = 1, 500 do extra[i] = assert(socket.bind("127.0.0.1", 0)) end
for i = 501, 1000 do extra[i] = udp_socket() end
local connect = single("one open port, " .. #assert(core.listeners(1, 65535)) ..
  " listening sockets (" .. udp_sockets() .. " UDP) on the machine")

-- 1024 refused ports: a free range next to nothing
local lo = 20000
local ports = {}
for i = 1, 1024 do ports[i] = lo + i - 1 end
print("1024 ports")
local many = ns_per_op(20, function() assert(listen.check_many(ports, nil)) end)
row("listen.check_many, host omitted", many, connect)
local umany = ns_per_op(20, function() assert(listen.check_many(ports, nil, "udp")) end)
row("listen.check_many, UDP, host omitted", umany, connect)
if tpu.check_many then
  local cm = ns_per_op(20, function() assert(tpu.check_many(ports, "127.0.0.1")) end)
  row("check_many, connect mode, 127.0.0.1", cm, connect)
end

print("the /proc fallback")
listen.backend("proc")
local proc = ns_per_op(50, function() assert(tpu.check { port = port, mode = "listen" } == true) end)
row("listen check via /proc/net/tcp*", proc, connect)
local uproc = ns_per_op(50, function()
  assert(tpu.check { port = udp_port, proto = "udp", mode = "listen" } == true)
end)
row("UDP listen check via /proc/net/udp*", uproc, connect)
listen.backend(false)

for _, s in ipairs(extra) do s:close() end
udp:close()
os.execute("kill " .. server_pid)
server:close()
