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

local M = { _VERSION = tpu._VERSION }

local type, tostring, pairs, pcall, error = type, tostring, pairs, pcall, error
local min = math.min
local now = core.now
local public = require("tcp_port_used.verdict").public
local get_phase, ngx_sleep, timer_at = ngx.get_phase, ngx.sleep, ngx.timer.at
local exiting = ngx.worker.exiting
local unpack = table.unpack or unpack -- luacheck: ignore 143

-- Where cosockets and ngx.sleep both work (lua-nginx-module's README).
local COSOCKET_PHASES = {
  rewrite = true, access = true, content = true, timer = true,
  ssl_cert = true, ssl_session_fetch = true, ssl_client_hello = true,
}

local function sleep_ms(ms)
  ngx_sleep(ms / 1000)
end

local function phase_error(fname, phase, doing)
  error(string.format("%s: cannot %s in the nginx '%s' phase: it has no cosockets or " ..
    "ngx.sleep and must not block (call it from a rewrite, access, content or timer " ..
    "handler, or use on_used/on_free, which run it in a timer)", fname, doing, phase), 3)
end

-- probe.lua and the verdict over the OpenResty transport: the same answer
-- as the C core gives for the same input.
local probe = require("tcp_port_used.probe")(require "tcp_port_used.transport.ngx")

local function wait_here(o, sleep)
  return loop.wait(o, function(port, budget)
    return probe(o, port, budget, sleep_ms)
  end, sleep, now)
end

--- check(port [, host]) or check{ port, host, timeout_ms, mode, close }.
function M.check(a, b)
  local o = args.check("check", a, b)
  local phase = get_phase()
  if COSOCKET_PHASES[phase] then return public(probe(o, o.port, o.timeout_ms, sleep_ms)) end
  -- No request is served yet in these phases: one probe bounded by
  -- timeout_ms may block.
  if phase == "init" or phase == "init_worker" then
    return public(probe(o, o.port, o.timeout_ms, nil))
  end
  phase_error("check", phase, "probe")
end

args.define_waits(M, function(fname, o)
  local phase = get_phase()
  if COSOCKET_PHASES[phase] then return wait_here(o, o.sleep or sleep_ms) end
  if phase == "init" then
    local sleep = o.sleep or core.sleep
    return loop.wait(o, function(port, budget)
      return probe(o, port, budget, o.sleep)
    end, sleep, now)
  end
  phase_error(fname, phase, "wait")
end)

-- A worker that is shutting down must not be held by a long wait: the
-- timer's sleeps are cut into slices, and between them the wait ends
-- with "shutdown".
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

local function pack(...)
  return { n = select("#", ...), ... }
end

local function on_timer(premature, o, cb)
  if premature then return cb(nil, "shutdown") end
  local r = pack(pcall(wait_here, o, timer_sleep(o.sleep)))
  if r[1] then return cb(unpack(r, 2, r.n)) end
  if r[2] == SHUTDOWN then return cb(nil, "shutdown") end
  -- An error raised by on_retry or opts.sleep: the callback still runs
  -- exactly once, and hears of it.
  return cb(nil, tostring(r[2]))
end

-- on_used(port, opts, cb) or on_used(opts, cb): starts the wait in a
-- timer and returns true at once; cb(values of the wait) runs later,
-- exactly once: cb(nil, "shutdown") when the worker exits first. Returns
-- nil, err when nginx refuses the timer (lua_max_pending_timers), and cb
-- is then never called.
local function define_on(fname, in_use)
  M[fname] = function(a, b, c)
    local t, cb, cb_argn = a, b, 2
    if type(a) ~= "table" then
      if b ~= nil and type(b) ~= "table" then
        args.fail(fname, 2, "opts must be a table or nil", b, 3)
      end
      t = {}
      for k, v in pairs(b or {}) do t[k] = v end
      if t.port ~= nil or t.ports ~= nil then
        error(string.format("bad argument #2 to '%s' (opts must not hold port or ports " ..
          "when the port is argument #1)", fname), 2)
      end
      t.port, cb, cb_argn = a, c, 3
    end
    local o = args.wait_table(fname, t, in_use)
    if type(cb) ~= "function" then
      args.fail(fname, cb_argn, "callback must be a function", cb, 3)
    end
    local phase = get_phase()
    if phase == "init" then
      error(string.format("%s: nginx has no timers in the 'init' phase (call %s there, " ..
        "which blocks as init allows, or %s from init_worker_by_lua)", fname,
        in_use and "wait_until_used" or "wait_until_free", fname), 2)
    end
    local ok, err = timer_at(0, on_timer, o, cb)
    if not ok then return nil, fname .. ": cannot start a timer: " .. tostring(err) end
    return true
  end
end

define_on("on_used", true)
define_on("on_free", false)


--- The ports a process opens: listeners is the core's (a kernel query
-- that never waits); wait_for_listeners sleeps with ngx.sleep where it
-- may, and blocks in init_by_lua, as the waits do.
do
  local procs = require "tcp_port_used.procs"
  M.listeners = tpu.listeners

  function M.wait_for_listeners(t)
    local o = procs.options("wait_for_listeners", t, true)
    local phase = get_phase()
    if COSOCKET_PHASES[phase] then return procs.wait(o, o.sleep or sleep_ms, now) end
    if phase == "init" then return procs.wait(o, o.sleep or core.sleep, now) end
    phase_error("wait_for_listeners", phase, "wait")
  end
end

return M
