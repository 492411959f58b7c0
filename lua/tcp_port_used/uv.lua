--- tcp_port_used.uv: the API of tcp_port_used for luv and Neovim, where
-- the loop must never freeze. Probes are luv TCP handles (UDP handles for
-- UDP bind probes) and sleeps are luv timers, so it needs no compiler: the
-- C core is used only for the mode luv cannot answer (listen, TCP or UDP). The retry loop is loop.lua's, run in
-- a coroutine that yields to the loop while a probe or a sleep is pending.
--
-- Where each form runs:
-- * on_used / on_free: never block; the callback runs once, from the loop
--   (in Neovim through vim.schedule, so the editor API may be called).
-- * check and the waits inside a coroutine: suspend it; the loop resumes
--   it (in Neovim through vim.schedule).
-- * outside a coroutine: plain luv runs the default loop (uv.run "once")
--   until the answer is in, serving every other handle meanwhile; Neovim
--   uses vim.wait, which keeps processing the editor's events. Both refuse
--   inside a loop callback, where blocking would freeze the loop.
local args = require "tcp_port_used.args"
local loop = require "tcp_port_used.loop"
local words = require "tcp_port_used.words"
local adapter = require "tcp_port_used.adapter"
local pack, unpack = require("tcp_port_used.pack").pack, require("tcp_port_used.pack").unpack

local vim_ = rawget(_G, "vim")
local nvim = type(vim_) == "table" and (vim_.uv or vim_.loop) ~= nil
local uv = nvim and (vim_.uv or vim_.loop) or require "luv"

if not nvim then
  -- luv (1.44) frees its loop when the module table that created it is
  -- collected, yet a later require "luv" in the same Lua state reuses that
  -- loop and crashes. Test runners that unload modules between files
  -- (busted's insulate) do exactly that, so the first luv stays alive, as
  -- in a program that loads it once.
  local registry = debug.getregistry()
  registry["tcp_port_used.uv luv"] = registry["tcp_port_used.uv luv"] or uv
end

local has_core = pcall(require, "tcp_port_used.core")
local tpu = has_core and require "tcp_port_used" or nil

local M = { _VERSION = tpu and tpu._VERSION or require "tcp_port_used.version", has_core = has_core }

local yield, resume, status = coroutine.yield, coroutine.resume, coroutine.status
local hrtime = uv.hrtime
local public = require("tcp_port_used.verdict").public

-- uv.now() is the time the loop iteration started: stale while a callback
-- runs long, so deadlines use the monotonic high-resolution clock.
local function now()
  return hrtime() / 1e6
end

local uvt = require("tcp_port_used.transport.uv")(uv, now)
local start_timer = uvt.start_timer

local can_yield = adapter.can_yield

-- Neovim runs luv callbacks as "fast events", where the editor API is
-- off limits: everything of the caller's (a resumed coroutine, on_retry,
-- the callback) runs from vim.schedule instead.
local function later(f)
  if nvim then return vim_.schedule(f) end
  f()
end

local function defer(f)
  if nvim then return vim_.schedule(f) end
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    f()
  end)
end

-- Coroutines this module created, each with the function that receives
-- its packed results (or nil, the error with a traceback, the error).
local tasks = setmetatable({}, { __mode = "k" })
-- Coroutines suspended in await (a yield of ours, not of the caller's code).
local parked = setmetatable({}, { __mode = "k" })

local wake

-- A task of run() that yielded by itself follows tcp_port_used's protocol:
-- it yielded the milliseconds until it wants to run again.
local function resume_after(co, ms)
  local t = uv.new_timer()
  start_timer(t, tonumber(ms) or 0, function()
    t:close()
    later(function() wake(co) end)
  end)
end

function wake(co)
  local ok, r = resume(co)
  local task = tasks[co]
  if not task then
    -- the caller's coroutine: its error surfaces as any error in a loop callback
    if not ok then error(debug.traceback(co, tostring(r)), 0) end
    return
  end
  if not ok then return task(nil, debug.traceback(co, tostring(r)), r) end
  if status(co) == "dead" then return task(r) end
  if not parked[co] then resume_after(co, r) end
end

--- Suspends the running coroutine until start's `done` is called from the
-- loop and returns what it was given. Resumed early by someone else, it
-- suspends again.
local function await(start)
  local co = coroutine.running()
  local st = {}
  start(function(...)
    st.res = pack(...)
    if st.parked then
      later(function()
        if st.parked then wake(co) end
      end)
    end
  end)
  while not st.res do
    st.parked, parked[co] = true, true
    yield()
    st.parked, parked[co] = false, nil
  end
  return unpack(st.res, 1, st.res.n)
end

local function spawn(job, on_done)
  local co = coroutine.create(function() return pack(job()) end)
  tasks[co] = on_done
  wake(co)
end

-- Whether this call comes from a luv callback on the main thread: the
-- loop is running below us, and blocking (or running it again) would
-- freeze it or re-enter libuv.
local function inside_uv_run()
  local run = uv.run
  local level = 3
  while true do
    local info = debug.getinfo(level, "f")
    if not info then return false end
    if info.func == run then return true end
    level = level + 1
  end
end

local function block(fname, job)
  if nvim and vim_.in_fast_event() or not nvim and inside_uv_run() then
    error(string.format("%s: cannot block inside a luv callback (it would freeze the loop): " ..
      "call it in a coroutine, or use on_used/on_free", fname), 3)
  end
  local r, failure
  spawn(job, function(res, err) r, failure = res, err end)
  while not r and not failure do
    if nvim then
      local _, why = vim_.wait(60000, function() return r ~= nil or failure ~= nil end, 50)
      if why == -2 then return nil, words.message(fname, nil, "EINTR"), "EINTR" end
    else
      uv.run("once")
    end
  end
  -- Handles the probe gave up on (a connect past its budget) are closed
  -- but their callbacks have not run: luv 1.44 crashes at exit if the loop
  -- never runs them, so one more pass completes the closes.
  if not nvim then uv.run("nowait") end
  if failure then error(failure, 0) end
  return unpack(r, 1, r.n)
end

-- Runs job in the caller's coroutine (awaits suspend it) or, outside one,
-- drives it to its end where blocking is allowed.
local function perform(fname, may_yield, job)
  if may_yield and can_yield() then return job() end
  return block(fname, job)
end

--- Sleeping --------------------------------------------------------------

local function timer_sleep(ms)
  return await(function(done)
    local t = uv.new_timer()
    start_timer(t, ms, function()
      t:close()
      done()
    end)
  end)
end

--- Probes ----------------------------------------------------------------

-- The luv transport's callbacks as awaits, for probe.lua and the verdict:
-- the same answer as the C core gives for the same input.

local probe = require("tcp_port_used.probe") {
  connect = function(host, port, budget, close)
    return await(function(done) uvt.connect(host, port, budget, close, done) end)
  end,
  bind = function(host, port, proto)
    return await(function(done) uvt.bind(host, port, proto, done) end)
  end,
  -- a kernel query in C that never waits on the network
  listen = has_core and require("tcp_port_used.listen").outcomes or nil,
  ipv6 = uvt.ipv6,
  resolve = function(host)
    return await(function(done) uvt.resolve(host, done) end)
  end,
  open = function(address, port, unix, deadline)
    return uvt.open(address, port, unix, deadline, await)
  end,
  now = now,
}

local LUV_MODES = { connect = true, bind = true, any = true }

local function needs_core(fname, o, level)
  if not LUV_MODES[o.mode] and not tpu then
    error(string.format("bad argument #1 to '%s' (mode '%s' needs the C core " ..
      "tcp_port_used.core, which is not installed)", fname, o.mode), level or 3)
  end
end

-- explain: the socket tables through the C core where it is installed
-- (kernel queries that never wait on the network), else the probe alone.
local explain_port = require("tcp_port_used.explain").explainer(
  has_core and require "tcp_port_used.tables" or nil)

local function wait_job(o)
  return loop.wait(o, function(port, budget)
    return probe(o, port, budget)
  end, o.sleep or timer_sleep, now, explain_port)
end

--- Public API --------------------------------------------------------------

--- check(port [, host]) or check{ port, host, timeout_ms, mode, close,
-- proto, ready, path, status, user, database, unix }.
function M.check(a, b)
  local o = args.check("check", a, b)
  needs_core("check", o)
  return perform("check", true, function() return public(probe(o, o.port, o.timeout_ms)) end)
end

--- explain(port [, host]) or explain{...}: as tcp_port_used.explain, its
-- probe a luv one (awaited, as check's).
function M.explain(a, b)
  local o = args.explain("explain", args.check("explain", a, b))
  needs_core("explain", o)
  return perform("explain", true, function()
    return explain_port(o, o.port, function() return probe(o, o.port, o.timeout_ms) end)
  end)
end

args.define_waits(M, function(fname, o)
  needs_core(fname, o)
  return perform(fname, o.yield, function() return wait_job(o) end)
end)

-- on_used(port, opts, cb) or on_used(opts, cb): returns true at once;
-- cb gets the wait's values, or nil and the text of an error raised by
-- on_retry or opts.sleep.
adapter.define_callbacks(M, function(fname, o, cb)
  needs_core(fname, o, 4)
  defer(function()
    spawn(function() return wait_job(o) end, function(r, _, err)
      if r then return adapter.deliver(cb, true, unpack(r, 1, r.n)) end
      adapter.deliver(cb, false, err)
    end)
  end)
  return true
end)

--- run(f, g, ...): runs each function concurrently on the loop (blocking as
-- the waits do outside a coroutine) and returns one table of results per
-- argument, { n = k, ... }. A function may call this module's waits, or
-- yield milliseconds as tcp_port_used's own waits do in a coroutine.
function M.run(...)
  local n = select("#", ...)
  local fs = { ... }
  for i = 1, n do
    if type(fs[i]) ~= "function" then args.fail("run", i, "function expected", fs[i], 3) end
  end
  return perform("run", true, function()
    local results, left, failure = {}, n, nil
    await(function(done)
      if n == 0 then return done() end
      for i = 1, n do
        spawn(fs[i], function(r, err)
          if failure then return end
          if not r then
            failure = err
            return done()
          end
          results[i], left = r, left - 1
          if left == 0 then done() end
        end)
      end
    end)
    if failure then error(failure, 0) end
    return results
  end)
end


--- The ports a process opens (they need the C core: /proc and the
-- sockets themselves). wait_for_listeners sleeps on luv timers as the
-- waits do; spawn is uv.spawn whose exit callback also gives a wait for
-- that pid the exit status (libuv reaps the child before a wait looks).
if tpu then
  local procs = require "tcp_port_used.procs"
  M.listeners = tpu.listeners

  function M.wait_for_listeners(t)
    local o = procs.options("wait_for_listeners", t, true)
    return perform("wait_for_listeners", o.yield, function()
      return procs.wait(o, o.sleep or timer_sleep, now)
    end)
  end

  function M.spawn(path, options, on_exit)
    local handle, pid
    handle, pid = uv.spawn(path, options, function(code, signal)
      if pid then procs.reported[pid] = { code, signal } end
      if on_exit then on_exit(code, signal) end
    end)
    return handle, pid
  end
end

return M
