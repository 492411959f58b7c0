--- tcp_port_used: is something listening on this TCP port, and wait until
-- it is (or until it is free) without freezing the program that waits.
-- The C core reports what each probe saw (transport/core.lua); probe.lua
-- and verdict.lua make the answer, loop.lua retries as policy.lua says,
-- and sched.lua chooses how to wait.
local core = require "tcp_port_used.core"
local args = require "tcp_port_used.args"
local loop = require "tcp_port_used.loop"
local sched = require "tcp_port_used.sched"
local listen = require "tcp_port_used.listen"
local transport = require "tcp_port_used.transport.core"

local M = { _VERSION = core._VERSION }

local now = core.now
local public = require("tcp_port_used.verdict").public

local probe = require("tcp_port_used.probe")(transport)
local explain = require "tcp_port_used.explain"
-- explain and the waits' timeouts read this machine's socket tables.
local explain_port = explain.explainer(require "tcp_port_used.tables")

--- check(port [, host]) or check{ port, host, timeout_ms, mode, close,
-- proto, ready, path, status, user, database, unix }: true (in use, or
-- ready), false [, reason] (free, or not ready) or nil, err, code.
-- The options of the core's check: one table, refilled by each call (a
-- check never yields, so no two calls share it at once).
local check_options = {}

function M.check(a, b)
  local o = args.check("check", a, b, check_options)
  return public(probe(o, o.port, o.timeout_ms, nil))
end

local function wait(fname, o)
  local sleep, blocking = sched.choose(o, fname)
  local probe_sleep = not blocking and sleep or nil
  return loop.wait(o, function(port, budget)
    return probe(o, port, budget, probe_sleep)
  end, sleep, now, explain_port)
end

args.define_waits(M, wait)

M.run = sched.run

--- explain(port [, host]) or explain{ port, host, proto, ready, timeout_ms,
-- mode, ... } (check's options): why the port is or is not ready, as
-- { state, text, asked, listeners, time_wait, probe } (explain.lua). One
-- probe, as check makes it; never raises but for a bad argument.
function M.explain(a, b)
  local o = args.explain("explain", args.check("explain", a, b))
  return explain_port(o, o.port, function()
    return probe(o, o.port, o.timeout_ms, nil)
  end)
end

--- owner(port [, host]) or owner{ port =, host =, proto = }: who listens
-- on port (host nil: any local address), one entry per socket: { address,
-- port, proto, uid, inode, pid, command, pids } or, where the holder may
-- not be inspected, pid nil and a `reason`. See tcp_port_used.listen.
function M.owner(a, b)
  return listen.owner(args.owner("owner", a, b))
end

--- listeners{ pid, tree = true, proto = "tcp" } (or listeners(pid)): the
-- listening sockets of a process and its descendants; wait_for_listeners{
-- pid, count = 1 | ports, timeout_ms = 10000, tree, proto, interval_ms,
-- sleep, yield } waits for them, sleeping as the waits do. See
-- tcp_port_used.procs.
local procs = require "tcp_port_used.procs"

function M.listeners(t)
  return procs.listeners(procs.options("listeners", t, false))
end

function M.wait_for_listeners(t)
  local o = procs.options("wait_for_listeners", t, true)
  return procs.wait(o, (sched.choose(o, "wait_for_listeners")), now)
end

local many = require "tcp_port_used.many"
M.check_many, M.range = many.check_many, many.range
M.find_free = require("tcp_port_used.free").find_free

-- For the adapters: one probe in any mode through the C core, non-blocking
-- when given a sleep (tcp_port_used.ngx sends local targets through it).
M._probe = probe

return M
