--- tcp_port_used.uv: the API of tcp_port_used for luv and Neovim, where
-- the loop must never freeze. Probes are luv TCP handles and sleeps are
-- luv timers, so it needs no compiler: the C core is used only for the
-- modes luv cannot answer (listen). The retry loop is loop.lua's, run in
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

local M = { _VERSION = tpu and tpu._VERSION or "0.1.0", has_core = has_core }

local unpack = table.unpack or unpack
local yield, resume, status = coroutine.yield, coroutine.resume, coroutine.status
local hrtime, ceil, max = uv.hrtime, math.ceil, math.max

-- uv.now() is the time the loop iteration started: stale while a callback
-- runs long, so deadlines use the monotonic high-resolution clock.
local function now()
  return hrtime() / 1e6
end

-- A luv timer counts from the loop's cached time, which is stale when
-- the loop has not run for a while (a blocking caller, a long callback):
-- refreshed first, a timer never fires early.
local function start_timer(t, ms, cb)
  uv.update_time()
  t:start(ceil(max(ms, 0)), 0, cb)
end

local function pack(...)
  return { n = select("#", ...), ... }
end

local function can_yield()
  if coroutine.isyieldable then return coroutine.isyieldable() end
  local co, main = coroutine.running()
  return co ~= nil and not main
end

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
-- its packed results (or nil, error).
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
  if not ok then return task(nil, debug.traceback(co, tostring(r))) end
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
      if why == -2 then return nil, "interrupted", "EINTR" end
    else
      uv.run("once")
    end
  end
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

--- Addresses -------------------------------------------------------------

-- The same words as the C core uses, so messages read alike everywhere.
local MESSAGES = {
  ECONNREFUSED = "connection refused", ETIMEDOUT = "timed out",
  EHOSTUNREACH = "host unreachable", ENETUNREACH = "network unreachable",
  EHOSTDOWN = "host is down", ENETDOWN = "network is down",
  EACCES = "permission denied", EPERM = "operation not permitted",
  EADDRINUSE = "address in use", EADDRNOTAVAIL = "address not available",
  EAFNOSUPPORT = "address family not supported", EMFILE = "too many open files",
  ENFILE = "too many open files in system", ENOBUFS = "no buffer space available",
  ENOMEM = "out of memory", EINVAL = "invalid argument", ECONNRESET = "connection reset",
  ECONNABORTED = "connection aborted",
  EAI_NONAME = "Name or service not known", EAI_AGAIN = "Temporary failure in name resolution",
  EAI_FAIL = "Non-recoverable failure in name resolution",
}

-- luv reports "ENAME" to callbacks and "ENAME: message" from calls.
local function code_of(e)
  return tostring(e):match("^([%u%d_]+)") or "EUNKNOWN"
end

local function message_of(code, e)
  return MESSAGES[code] or tostring(e):match("^[%u%d_]+: (.*)") or code
end

local LOOPBACKS = { { ip = "127.0.0.1", v6 = false }, { ip = "::1", v6 = true } }

--- Calls done(targets, named) or done(nil, err, code), from the loop for
-- a name (uv.getaddrinfo does not block it), at once for a literal.
local function resolve(host, done)
  if host == nil then return done(LOOPBACKS, false) end
  local name = host:match("^%[(.*)%]$") or host
  if name:find(":", 1, true) then return done({ { ip = name, v6 = true } }, false) end
  if name:match("^%d+%.%d+%.%d+%.%d+$") then return done({ { ip = name, v6 = false } }, false) end
  local function fail(e)
    local code = code_of(e)
    done(nil, "resolve " .. host .. ": " .. message_of(code, e), code)
  end
  local req, e = uv.getaddrinfo(name, nil, { socktype = "stream", protocol = "tcp" },
    function(err, res)
      if err then return fail(err) end
      local list, seen = {}, {}
      for _, ai in ipairs(res or {}) do
        if (ai.family == "inet" or ai.family == "inet6") and not seen[ai.addr] then
          seen[ai.addr] = true
          list[#list + 1] = { ip = ai.addr, v6 = ai.family == "inet6" }
        end
      end
      if #list == 0 then return fail("EAI_NONAME") end
      done(list, true)
    end)
  if not req then fail(e) end
end

local function where(host, named, t, port)
  local addr = t.v6 and ("[" .. t.ip .. "]:" .. port) or (t.ip .. ":" .. port)
  if named then return (host:match("^%[(.*)%]$") or host) .. ":" .. port .. " (" .. addr .. ")" end
  return addr
end

local ipv6
-- Asked only after an IPv6 address failed in a way a missing family
-- explains, as the C core does.
local function ipv6_available()
  if ipv6 == nil then
    local h = uv.new_tcp()
    local ok, _, code = h:bind("::1", 0)
    h:close()
    ipv6 = ok ~= nil or (code ~= "EADDRNOTAVAIL" and code ~= "EAFNOSUPPORT")
  end
  return ipv6
end

local function missing_family(t, code)
  return t.v6 and (code == "EAFNOSUPPORT" or code == "EADDRNOTAVAIL" or code == "ENETUNREACH")
    and not ipv6_available()
end

--- Connect probe ---------------------------------------------------------

-- The close policy of the C core (SPEC: "a probe leaves nothing behind"):
-- FIN, which servers do not log, until this process has made about 100
-- connected probes in the last second; then resets, so that TIME_WAIT
-- entries cannot exhaust the ephemeral ports. A sliding estimate over two
-- one-second windows.
local rate = { start = 0, prev = 0, cur = 0 }

local function should_reset(mode)
  if mode ~= "auto" then return mode == "reset" end
  local t = now()
  local elapsed = t - rate.start
  if elapsed >= 1000 then
    rate.prev = elapsed >= 2000 and 0 or rate.cur
    rate.cur = 0
    rate.start = elapsed >= 2000 and t or rate.start + 1000
    elapsed = t - rate.start
  end
  local estimate = rate.prev * (1 - elapsed / 1000) + rate.cur
  rate.cur = rate.cur + 1
  return estimate >= 100
end

local function close_connected(h, mode)
  if should_reset(mode) and h.close_reset then h:close_reset() else h:close() end
end

--- Connects to every target at once; done(true) as soon as one accepts,
-- else, once all have answered or budget ms have passed, done(nil, err,
-- code) for the first failure, done(false) if any refused, or an error if
-- every address was of a family this machine lacks.
local function connect_all(host, named, targets, port, budget, close, done)
  local slots, finished = {}, false
  local timer = uv.new_timer()

  local function finish(...)
    finished = true
    timer:close()
    for _, s in ipairs(slots) do
      if s.h then
        s.h:close()
        s.h = nil
      end
    end
    done(...)
  end

  local function failed(s, code)
    if s.h then
      s.h:close()
      s.h = nil
    end
    if code == "ECONNREFUSED" then
      s.state = "refused"
    elseif missing_family(s.t, code) then
      s.state = "skipped"
    else
      s.state, s.code = "failed", code
    end
  end

  local function settle()
    if finished then return end
    for _, s in ipairs(slots) do
      if s.state == "pending" then return end
    end
    for _, s in ipairs(slots) do
      if s.state == "failed" then
        return finish(nil, "connect " .. where(host, named, s.t, port) .. ": "
          .. message_of(s.code, s.code), s.code)
      end
    end
    for _, s in ipairs(slots) do
      if s.state == "refused" then return finish(false) end
    end
    finish(nil, "connect " .. where(host, named, slots[1].t, port) ..
      ": no address of a family this machine has", "EAFNOSUPPORT")
  end

  -- libuv runs due timers before it polls for I/O: a connect that
  -- answered by the deadline gets one more poll (the timer re-armed for
  -- 1 ms) before it counts as timed out, as the C core's poll sees it.
  local looked = false
  local function expire()
    if not looked then
      looked = true
      return start_timer(timer, 1, expire)
    end
    for _, s in ipairs(slots) do
      if s.state == "pending" then failed(s, "ETIMEDOUT") end
    end
    settle()
  end
  start_timer(timer, max(budget, 1), expire)
  for i, t in ipairs(targets) do
    local s = { t = t, state = "pending" }
    slots[i] = s
    local h, herr = uv.new_tcp()
    if not h then
      failed(s, code_of(herr))
    else
      s.h = h
      local req, cerr = h:connect(t.ip, port, function(err)
        -- a handle closed by finish() reports ECANCELED here
        if finished or s.state ~= "pending" then return end
        if err then
          failed(s, code_of(err))
          return settle()
        end
        s.state, s.h = "open", nil
        close_connected(h, close)
        finish(true)
      end)
      if not req then failed(s, code_of(cerr)) end
    end
  end
  settle()
end

local function connect_probe(o, port, budget)
  local targets, named_or_err, code = await(function(done) resolve(o.host, done) end)
  if not targets then return nil, named_or_err, code end
  return await(function(done)
    connect_all(o.host, named_or_err, targets, port, budget, o.close, done)
  end)
end

--- Bind probe ------------------------------------------------------------

-- libuv sets SO_REUSEADDR on every TCP bind (as servers do), the very
-- probe the C core makes; it may hold EADDRINUSE back until listen, but
-- getsockname reports it, so the probe never listens.
local function bind_one(t, port)
  local h = uv.new_tcp()
  local ok, e = h:bind(t.ip, port, t.v6 and { ipv6only = true } or nil)
  if ok then ok, e = h:getsockname() end
  h:close()
  if ok then return "free" end
  local code = code_of(e)
  if code == "EADDRINUSE" then return "used" end
  if missing_family(t, code) then return "skipped" end
  return "failed", code
end

local function bind_probe(o, port)
  local targets, named_or_err, rcode = await(function(done) resolve(o.host, done) end)
  if not targets then return nil, named_or_err, rcode end
  local first, first_code, any_free
  for _, t in ipairs(targets) do
    local r, code = bind_one(t, port)
    if r == "used" then return true end
    if r == "free" then any_free = true end
    if r == "failed" and not first then first, first_code = t, code end
  end
  if first then
    return nil, "bind " .. where(nil, false, first, port) .. ": " .. message_of(first_code, first_code),
      first_code
  end
  if any_free then return false end
  return nil, "bind " .. where(nil, false, targets[1], port) ..
    ": no address of a family this machine has", "EAFNOSUPPORT"
end

--- One probe -------------------------------------------------------------

local LUV_MODES = { connect = true, bind = true, any = true }

local function probe(o, port, budget)
  local mode = o.mode
  if mode == "bind" then return bind_probe(o, port) end
  if not LUV_MODES[mode] then
    -- a kernel query in C that never waits on the network
    return tpu.check { port = port, host = o.host, mode = mode, timeout_ms = budget }
  end
  local r, err, code = connect_probe(o, port, budget)
  if r == true then return true end
  if mode == "connect" then
    if r == false then return false end
    return nil, err, code
  end
  local b, berr, bcode = bind_probe(o, port)
  if b == true then return true end
  if r == nil then return nil, err, code end
  if b == nil then return nil, berr, bcode end
  return false
end

local function needs_core(fname, o)
  if not LUV_MODES[o.mode] and not tpu then
    error(string.format("bad argument #1 to '%s' (mode '%s' needs the C core " ..
      "tcp_port_used.core, which is not installed)", fname, o.mode), 3)
  end
end

local function wait_job(o)
  return loop.wait(o, function(port, budget)
    return probe(o, port, budget)
  end, o.sleep or timer_sleep, now)
end

--- Public API --------------------------------------------------------------

--- check(port [, host]) or check{ port, host, timeout_ms, mode, close }.
function M.check(a, b)
  local o = args.check("check", a, b)
  needs_core("check", o)
  return perform("check", true, function() return probe(o, o.port, o.timeout_ms) end)
end

args.define_waits(M, function(fname, o)
  needs_core(fname, o)
  return perform(fname, o.yield, function() return wait_job(o) end)
end)

-- on_used(port, opts, cb) or on_used(opts, cb).
local function define_callback(fname, in_use)
  M[fname] = function(a, b, c)
    local o, cb, cbn
    if type(a) == "table" then
      o, cb, cbn = args.wait_table(fname, a, in_use), b, 2
    else
      if b ~= nil and type(b) ~= "table" then args.fail(fname, 2, "opts must be a table or nil", b, 3) end
      local t = {}
      for k, v in pairs(b or {}) do t[k] = v end
      t.port = a
      o, cb, cbn = args.wait_table(fname, t, in_use), c, 3
    end
    if type(cb) ~= "function" then args.fail(fname, cbn, "callback must be a function", cb, 3) end
    needs_core(fname, o)
    defer(function()
      spawn(function() return wait_job(o) end, function(r, err)
        if not r then error(err, 0) end
        cb(unpack(r, 1, r.n))
      end)
    end)
  end
end

define_callback("on_used", true)
define_callback("on_free", false)

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

return M
