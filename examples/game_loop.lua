-- A tick-based game-server loop (plain Lua, one thread) that resumes its
-- coroutines once per tick. Some of them wait for backend ports with
-- tcp_port_used: inside a coroutine the wait yields instead of blocking
-- (it yields the milliseconds until its next probe; resumed early, as a
-- tick loop does, it just yields again), so the loop keeps its rate.
--
--   lua examples/game_loop.lua 5432 6379   -- wait for those ports on loopback
--
-- Required as a module it returns run(opts), which the spec drives.
local tpu = require "tcp_port_used"
local core = require "tcp_port_used.core"

local unpack = table.unpack or unpack

local function pack(...)
  return { n = select("#", ...), ... }
end

--- run{ hz = 60, tasks = { f, ... }, stop = function(stats) } runs the
-- loop until every task has finished or stop(stats) returns true, and
-- returns stats: ticks, elapsed_ms, rate (ticks per second), max_gap_ms
-- (the longest time between two ticks) and results (each task's return
-- values, { n = k, ... }, once it has finished).
local function run(opts)
  local period = 1000 / (opts.hz or 60)
  local tasks, left = {}, #opts.tasks
  for i, f in ipairs(opts.tasks) do tasks[i] = coroutine.create(f) end
  local stats = { ticks = 0, max_gap_ms = 0, results = {} }
  local start = core.now()
  local next_tick, last = start, start
  while left > 0 and not (opts.stop and opts.stop(stats)) do
    local t = core.now()
    stats.max_gap_ms = math.max(stats.max_gap_ms, t - last)
    last = t
    stats.ticks = stats.ticks + 1
    for i, co in ipairs(tasks) do
      if coroutine.status(co) == "suspended" then
        local r = pack(coroutine.resume(co))
        if not r[1] then error(r[2], 0) end
        if coroutine.status(co) == "dead" then
          stats.results[i] = pack(select(2, unpack(r, 1, r.n)))
          left = left - 1
        end
      end
    end
    -- a fixed rate: the next tick is due one period after this one was,
    -- and a late tick does not make the following ones early
    next_tick = math.max(next_tick + period, core.now())
    -- (the clock has moved on since: a late tick sleeps 0, never less)
    core.sleep(math.max(0, next_tick - core.now()))
  end
  stats.elapsed_ms = core.now() - start
  stats.rate = stats.ticks * 1000 / math.max(stats.elapsed_ms, 1)
  return stats
end

if ... and tostring(...):match("game_loop$") then return run end

-- As a script: one waiter per port given, and some game work beside them.
local ports = { ... }
if #ports == 0 then
  io.stderr:write("usage: lua examples/game_loop.lua PORT...\n")
  os.exit(2)
end
local tasks, ready = {}, 0
for _, p in ipairs(ports) do
  tasks[#tasks + 1] = function()
    local ok, err = tpu.wait_until_used { port = tonumber(p), timeout_ms = 30000 }
    print(("port %s: %s"):format(p, ok and "ready" or tostring(err)))
    ready = ready + 1
  end
end
for _ = 1, 50 do
  tasks[#tasks + 1] = function()
    local x = 0
    while ready < #ports do
      x = x + math.random() -- an NPC thinking
      coroutine.yield()
    end
  end
end
local s = run { hz = 60, tasks = tasks }
print(("%d ticks in %.0f ms: %.1f ticks/s, longest gap %.1f ms"):format(
  s.ticks, s.elapsed_ms, s.rate, s.max_gap_ms))
