--- explain against a connect check, in one run (only the ratios count):
-- explain of an open loopback port costs its probe (a connect check),
-- one kernel query per address family and the words; the SPEC's target
-- is at most 3x a connect check, flat in the number of listening sockets
-- on the machine (512 more must not double it). Rows for a refused port
-- (which reads more tables: the other protocol's, TIME_WAIT, and names
-- no holder, as nothing holds it) are for scale.
-- Run from the top of the tree after `make all build/bench/raw_connect`:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/explain.lua
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local socket = require "socket"

local RAW = "build/bench/raw_connect"
local N = tonumber(os.getenv("N")) or 10000

local function ns_per_op(n, fn)
  local t0 = core.now()
  for _ = 1, n do fn() end
  return (core.now() - t0) * 1e6 / n
end

local function median(list)
  table.sort(list)
  return list[math.floor((#list + 1) / 2)]
end

-- base and f, timed in alternating batches so that the load of a shared
-- machine weighs on both alike: the median ns of each, and the median of
-- the per-batch ratios.
local function versus(base, f)
  base()
  f()
  local bs, fs, rs = {}, {}, {}
  local batch = math.max(1, math.floor(N / 20))
  for i = 1, 20 do
    bs[i] = ns_per_op(batch, base)
    fs[i] = ns_per_op(batch, f)
    rs[i] = fs[i] / bs[i]
  end
  return median(bs), median(fs), median(rs)
end

-- The open port: raw_connect accepts and closes in a process of its own,
-- so the accept queue never fills.
local server = assert(io.popen("echo $$; exec " .. RAW .. " serve 127.0.0.1"))
local server_pid = assert(tonumber(server:read("*l")))
local port = assert(tonumber(server:read("*l")), "raw_connect serve printed no port")
local refused = assert(socket.tcp())
assert(refused:bind("127.0.0.1", 0))
local refused_port = tonumber((select(2, refused:getsockname())))

local function round(label)
  print(label)
  local check, explain, ratio = versus(
    function() assert(tpu.check(port, "127.0.0.1") == true) end,
    function() assert(tpu.explain(port, "127.0.0.1").state == "listening") end)
  local rcheck, rexplain, rratio = versus(
    function() assert(tpu.check(refused_port, "127.0.0.1") == false) end,
    function() assert(tpu.explain(refused_port, "127.0.0.1").state == "not-listening") end)
  local function row(name, ns, r, target)
    print(string.format("  %-44s %10.0f ns/op  %5.2fx %s", name, ns, r, target or ""))
  end
  row("connect check, open 127.0.0.1", check, 1)
  row("explain, open 127.0.0.1 (listening)", explain, ratio, "target <= 3x")
  row("connect check, refused 127.0.0.1", rcheck, 1)
  row("explain, refused 127.0.0.1 (not-listening)", rexplain, rratio, "(for scale)")
  return explain
end

local few = round("one open port, " .. #assert(core.listeners(1, 65535)) ..
  " listening sockets on the machine")
local extra = {}
for i = 1, 512 do extra[i] = assert(socket.bind("127.0.0.1", 0)) end
local many = round("one open port, " .. #assert(core.listeners(1, 65535)) ..
  " listening sockets on the machine (512 more)")
print(string.format("  explain with 512 more listeners / without: %.2fx (target < 2x, flat)",
  many / few))

for _, s in ipairs(extra) do s:close() end
refused:close()
os.execute("kill " .. server_pid)
server:close()
