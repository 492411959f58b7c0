--- How a wait passes the time between probes, and the small driver that
-- runs several waits at once in plain Lua (tcp_port_used.run).
local core = require "tcp_port_used.core"
local adapter = require "tcp_port_used.adapter"
local pack, unpack = require("tcp_port_used.pack").pack, require("tcp_port_used.pack").unpack

local M = {}

local now, yield = core.now, coroutine.yield
local can_yield = adapter.can_yield
local NGX_SLEEP_PHASES = adapter.NGX_YIELD_PHASES

--- The yield protocol: the wait yields the milliseconds until its next
-- probe is due (a number) and expects to be resumed with no values.
-- Resumed early it yields again with what is left; resumed late it
-- probes at once.
function M.yield_sleep(ms)
  local due = now() + ms
  while true do
    local left = due - now()
    if left <= 0 then return end
    yield(left)
  end
end

local function ngx_sleep(ms)
  rawget(_G, "ngx").sleep(ms / 1000)
end

--- Returns sleep(ms) and whether it blocks the thread, in the order the
-- docs/checks-and-waits.md gives ("how a wait sleeps between retries"):
-- opts.sleep, ngx.sleep, yield, blocking C sleep.
function M.choose(o, fname)
  if o.sleep then return o.sleep, false end
  local ngx_ = rawget(_G, "ngx")
  if type(ngx_) == "table" and type(ngx_.get_phase) == "function" then
    local phase = ngx_.get_phase()
    if NGX_SLEEP_PHASES[phase] then return ngx_sleep, false end
    if phase ~= "init" then
      adapter.phase_error(fname, phase, "wait", 3)
    end
    return core.sleep, true
  end
  if o.yield and can_yield() then return M.yield_sleep, false end
  return core.sleep, true
end

--- run(a, b, ...): runs each function or coroutine concurrently, resuming
-- each when the time it yielded has passed and sleeping in C until the
-- earliest is due. Returns one table per argument, { n = k, ... }.
function M.run(...)
  local n = select("#", ...)
  local tasks, results, left = {}, {}, n
  for i = 1, n do
    local f = select(i, ...)
    local co
    if type(f) == "function" then
      co = coroutine.create(f)
    elseif type(f) == "thread" and coroutine.status(f) == "suspended" then
      co = f
    else
      error(string.format("bad argument #%d to 'run' (function or suspended coroutine " ..
        "expected, got %s)", i, type(f) == "thread" and coroutine.status(f) .. " coroutine"
        or type(f)), 2)
    end
    tasks[i] = { co = co, due = -math.huge }
  end
  while left > 0 do
    local earliest = math.huge
    for i = 1, n do
      local t = tasks[i]
      if not results[i] and t.due <= now() then
        local r = pack(coroutine.resume(t.co))
        if not r[1] then error(r[2], 0) end
        if coroutine.status(t.co) == "dead" then
          results[i] = { n = r.n - 1, unpack(r, 2, r.n) }
          left = left - 1
        else
          t.due = now() + (tonumber(r[2]) or 0)
        end
      end
      if not results[i] and t.due < earliest then earliest = t.due end
    end
    if left > 0 then
      local wait = earliest - now()
      if wait > 0 then core.sleep(wait) end
    end
  end
  return results
end

return M
