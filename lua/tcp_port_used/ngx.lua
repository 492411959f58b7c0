--- tcp_port_used.ngx: the tcp_port_used API inside OpenResty.
-- In the phases that have cosockets (rewrite, access, content, timer,
-- ssl_cert, ssl_session_fetch, ssl_client_hello) a probe never blocks the
-- worker (transport/ngx.lua: cosockets, and the core's probe polled
-- between sleeps for this machine's own addresses) and a wait sleeps with
-- ngx.sleep, so nginx keeps serving other requests meanwhile. init_by_lua may block, so it gets the core's
-- blocking waits. init_worker_by_lua has neither, so it gets on_used /
-- on_free, which run the wait in an ngx.timer.at handler. Every other
-- phase raises an error naming the phase rather than freeze the worker.
-- luacheck: read globals ngx
if type(ngx) ~= "table" or type(ngx.get_phase) ~= "function" then
  error("tcp_port_used.ngx runs inside OpenResty (nginx with lua-nginx-module); " ..
    "elsewhere require 'tcp_port_used'", 2)
end

local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"
local args = require "tcp_port_used.args"
local loop = require "tcp_port_used.loop"
local adapter = require "tcp_port_used.adapter"
local words = require "tcp_port_used.words"
local pack, unpack = require("tcp_port_used.pack").pack, require("tcp_port_used.pack").unpack

local M = { _VERSION = tpu._VERSION }

local tostring, pcall, error = tostring, pcall, error
local min = math.min
local now = core.now
local public = require("tcp_port_used.verdict").public
local get_phase, ngx_sleep, timer_at = ngx.get_phase, ngx.sleep, ngx.timer.at
local exiting = ngx.worker.exiting
local COSOCKET_PHASES = adapter.NGX_YIELD_PHASES

local function sleep_ms(ms)
  ngx_sleep(ms / 1000)
end

-- probe.lua and the verdict over the OpenResty transport: the same answer
-- as the C core gives for the same input.
local probe = require("tcp_port_used.probe")(require "tcp_port_used.transport.ngx")

-- explain: the socket tables through the C core (kernel queries that
-- never wait on the network; naming holders reads /proc), the probe a
-- cosocket one where the phase has cosockets.
local explain_port = require("tcp_port_used.explain").explainer(require "tcp_port_used.tables")

-- Where a job may block the worker, by what it does: no request is served
-- yet in init and init_worker, but only init may spend a wait's time.
local MAY_BLOCK = { probe = { init = true, init_worker = true }, wait = { init = true } }

--- Runs job(sleep) as this phase allows and returns its values: in the
-- cosocket phases with sleep = ngx.sleep in milliseconds (the worker
-- serves others meanwhile), where it may block with sleep = nil (probes
-- block in C); elsewhere it raises naming the phase. doing: "probe" (one
-- probe, bounded by its timeout) or "wait". Call it as a tail call, so
-- that the error points at the caller of the public function.
local function perform(fname, doing, job)
  local phase = get_phase()
  if COSOCKET_PHASES[phase] then return job(sleep_ms) end
  if MAY_BLOCK[doing][phase] then return job(nil) end
  adapter.phase_error(fname, phase, doing, 2)
end

-- A wait whose probes sleep with probe_sleep (nil: they block) and whose
-- rounds sleep with sleep.
local function wait_with(o, probe_sleep, sleep)
  return loop.wait(o, function(port, budget)
    return probe(o, port, budget, probe_sleep)
  end, sleep, now, explain_port)
end

--- check(port [, host]) or check{ port, host, timeout_ms, mode, close }.
function M.check(a, b)
  local o = args.check("check", a, b)
  return perform("check", "probe", function(sleep)
    return public(probe(o, o.port, o.timeout_ms, sleep))
  end)
end

--- explain(port [, host]) or explain{...}: as tcp_port_used.explain, in
-- the phases where check may probe.
function M.explain(a, b)
  local o = args.explain("explain", args.check("explain", a, b))
  return perform("explain", "probe", function(sleep)
    return explain_port(o, o.port, function() return probe(o, o.port, o.timeout_ms, sleep) end)
  end)
end

args.define_waits(M, function(fname, o)
  return perform(fname, "wait", function(sleep)
    if sleep then return wait_with(o, sleep, o.sleep or sleep) end
    return wait_with(o, o.sleep, o.sleep or core.sleep)
  end)
end)

-- A worker that is shutting down must not be held by a long wait: the
-- timer's sleeps are cut into slices, and between them the wait ends
-- with ECANCELED.
local SHUTDOWN = setmetatable({}, { __tostring = function() return "shutdown" end })
local SHUTDOWN_SLICE_MS = 100

local function timer_sleep(user_sleep)
  return function(ms)
    if user_sleep then
      user_sleep(ms)
    else
      local due = now() + ms
      while true do
        if exiting() then error(SHUTDOWN) end
        local left = due - now()
        if left <= 0 then break end
        ngx_sleep(min(left, SHUTDOWN_SLICE_MS) / 1000)
      end
    end
    if exiting() then error(SHUTDOWN) end
  end
end

local function shutdown(fname, o, cb)
  return cb(nil, words.message(fname, words.waited(o.host, o.ports), "ECANCELED"), "ECANCELED")
end

local function on_timer(premature, fname, o, cb)
  if premature then return shutdown(fname, o, cb) end
  local r = pack(pcall(wait_with, o, sleep_ms, timer_sleep(o.sleep)))
  if not r[1] and r[2] == SHUTDOWN then return shutdown(fname, o, cb) end
  -- an error raised by on_retry or opts.sleep reaches cb
  return adapter.deliver(cb, unpack(r, 1, r.n))
end

-- on_used(port, opts, cb) or on_used(opts, cb): starts the wait in a
-- timer and returns true at once; cb(values of the wait) runs later,
-- exactly once: cb(nil, msg, "ECANCELED") when the worker exits first. Returns
-- nil, err when nginx refuses the timer (lua_max_pending_timers), and cb
-- is then never called.
adapter.define_callbacks(M, function(fname, o, cb)
  if get_phase() == "init" then
    error(string.format("%s: nginx has no timers in the 'init' phase (call %s there, " ..
      "which blocks as init allows, or %s from init_worker_by_lua)", fname,
      o.in_use and "wait_until_used" or "wait_until_free", fname), 3)
  end
  local ok, err = timer_at(0, on_timer, fname, o, cb)
  if not ok then return nil, fname .. ": cannot start a timer: " .. tostring(err) end
  return true
end)

--- The ports a process opens: listeners is the core's (a kernel query
-- that never waits); wait_for_listeners sleeps with ngx.sleep where it
-- may, and blocks in init_by_lua, as the waits do.
do
  local procs = require "tcp_port_used.procs"
  M.listeners = tpu.listeners

  function M.wait_for_listeners(t)
    local o = procs.options("wait_for_listeners", t, true)
    return perform("wait_for_listeners", "wait", function(sleep)
      return procs.wait(o, o.sleep or sleep or core.sleep, now)
    end)
  end
end

return M
