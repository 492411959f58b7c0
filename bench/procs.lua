--- listeners of a process against a listen-mode check, in one run
-- (absolute times vary 2x between machines and days; only the ratios
-- count). The process holds 4 listening sockets; 512 other listeners are
-- open on the machine (in this process, opened after the child started,
-- so that it does not inherit them).
--   * listeners{ pid, tree = false }: its descriptors and its sockets
--     (target: at most 5x a listen-mode check);
--   * listeners{ pid } (the default, tree = true): also finds its
--     descendants, from /proc/PID/task/*/children where the kernel has
--     them, else by reading the parent of every process (the row says
--     which, and how many processes there are);
--   * the same with the names from the kernel's tables (what a process
--     that may not borrow another's sockets pays), for scale.
-- Run from the top of the tree after `make all`:
--   LUA_PATH='lua/?.lua;lua/?/init.lua;;' LUA_CPATH='build/5.4/?.so;;' lua5.4 bench/procs.lua
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local procs = require "tcp_port_used.procs"
local socket = require "socket"

local N = tonumber(os.getenv("N")) or 1000

-- The best of 7 rounds: on a loaded machine the others measure the load.
local function us_per_op(n, fn)
  fn()
  local best = math.huge
  for _ = 1, 7 do
    local t0 = core.now()
    for _ = 1, n do fn() end
    best = math.min(best, (core.now() - t0) * 1e3 / n)
  end
  return best
end

local child = assert(io.popen("echo $$; exec lua5.4 -e " .. string.format("%q", [[
  package.cpath = ']] .. package.cpath .. [['
  local s = require 'socket'
  local ls = {}
  for i = 1, 4 do ls[i] = assert(s.bind('127.0.0.1', 0)) end
  print((select(2, ls[1]:getsockname())))
  io.stdout:flush()
  s.sleep(3600)]])))
local pid = assert(tonumber(child:read("*l")))
local port = assert(tonumber(child:read("*l")))

local others = {}
for i = 1, 512 do others[i] = assert(socket.bind("127.0.0.1", 0)) end
assert(#assert(tpu.listeners { pid = pid, tree = false }) == 4)
local nprocs = 0
for _ in io.popen("ls /proc"):lines() do nprocs = nprocs + 1 end
local children_files = io.open("/proc/" .. pid .. "/task/" .. pid .. "/children") ~= nil

local check = us_per_op(N * 4, function()
  assert(tpu.check { port = port, host = "127.0.0.1", mode = "listen" } == true)
end)
local alone = us_per_op(N, function() tpu.listeners { pid = pid, tree = false } end)
local tree = us_per_op(math.floor(N / 5), function() tpu.listeners { pid = pid } end)
procs.names = "tables"
local tables = us_per_op(math.floor(N / 50), function() tpu.listeners { pid = pid, tree = false } end)
procs.names = "socket"

local function row(name, us)
  print(string.format("  %-58s %8.1f us/op  %6.2fx listen check", name, us, us / check))
end
print("listeners of a process with 4 sockets, 512 other listeners on the machine")
row("listen-mode check of one port (the unit)", check)
row("listeners{ pid, tree = false }   (target <= 5x)", alone)
row(string.format("listeners{ pid } (descendants: %s, %d entries in /proc)",
  children_files and "children files" or "parent of every process", nprocs), tree)
row("listeners{ pid, tree = false }, names from the kernel's tables", tables)

for _, s in ipairs(others) do s:close() end
os.execute("kill " .. pid)
child:close()
