--- tcp_port_used: is something listening on this TCP port, and wait until
-- it is (or until it is free) without freezing the program that waits.
-- The C core makes single probes; this module adds options, the retry
-- loop and the choice of how to wait.
local core = require "tcp_port_used.core"
local args = require "tcp_port_used.args"
local loop = require "tcp_port_used.loop"
local sched = require "tcp_port_used.sched"
local listen = require "tcp_port_used.listen"

local M = { _VERSION = core._VERSION }

local now, min = core.now, math.min
local core_connect, core_bind, core_start = core.connect, core.bind, core.start

-- A connect probe that never blocks: started in C, then polled between
-- sleeps of the caller's choosing (a yield, ngx.sleep, opts.sleep) until
-- it answers or its budget is spent. An abandoned probe is closed by __gc.
local function connect_nonblocking(host, port, budget, close, sleep)
  local p, err, code = core_start(host, port, close)
  if type(p) ~= "userdata" then return p, err, code end
  local due, step = now() + budget, 1
  while true do
    local left = due - now()
    if left <= 0 then return p:expire() end
    sleep(min(step, left))
    step = min(step * 2, 50)
    local r, e, c = p:poll(0)
    if r ~= "pending" then return r, e, c end
  end
end

-- One probe of one port in the chosen mode. `sleep` is given when probes
-- must not block (see connect_nonblocking).
local function probe(o, port, budget, sleep)
  local mode = o.mode
  if mode == "bind" then return core_bind(o.host, port) end
  -- asked of the kernel, which answers at once: no connection, no wait
  if mode == "listen" then return listen.check(o.host, port) end
  local connect = sleep and connect_nonblocking or core_connect
  if mode == "connect" then return connect(o.host, port, budget, o.close, sleep) end
  local r, err, code = connect(o.host, port, budget, o.close, sleep)
  if r == true then return true end
  local b, berr, bcode = core_bind(o.host, port)
  if b == true then return true end
  if r == nil then return nil, err, code end
  if b == nil then return nil, berr, bcode end
  return false
end

--- check(port [, host]) or check{ port, host, timeout_ms, mode, close }:
-- true (in use), false (free) or nil, err, code.
function M.check(a, b)
  local o = args.check("check", a, b)
  return probe(o, o.port, o.timeout_ms, nil)
end

local function wait(fname, o)
  local sleep, blocking = sched.choose(o, fname)
  local probe_sleep = not blocking and sleep or nil
  return loop.wait(o, function(port, budget)
    return probe(o, port, budget, probe_sleep)
  end, sleep, now)
end

args.define_waits(M, wait)

M.run = sched.run

--- owner(port [, host]): who listens on port (host nil: any local
-- address), one entry per socket: { address, port, uid, inode, pid,
-- command, pids } or, where the holder may not be inspected, pid nil and
-- a `reason`. See tcp_port_used.listen.
local function owner_args(port, host)
  -- a normalizer of its own, so that an error lands on owner's caller
  args.port("owner", 1, port)
  args.host("owner", 2, host)
end

function M.owner(port, host)
  owner_args(port, host)
  return listen.owner(port, host)
end

local many = require "tcp_port_used.many"
M.check_many, M.range = many.check_many, many.range
M.find_free = require("tcp_port_used.free").find_free

-- For the adapters: one probe in any mode through the C core, non-blocking
-- when given a sleep (tcp_port_used.ngx uses it where cosockets cannot do
-- the job: bind and any modes, close = "reset").
M._probe = probe

return M
