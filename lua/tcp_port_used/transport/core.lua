--- The C core's transport: connect probes through csrc/connect.c (blocking
-- for at most the budget, or started and polled between the caller's
-- sleeps so that a yielding wait never blocks), bind probes, and listen
-- mode through tcp_port_used.listen, the last two for TCP or UDP. It
-- reports outcomes; it decides nothing (see probe.lua).
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"

local M = {}

local type, min, select = type, math.min, select
local unpack = table.unpack or unpack -- luacheck: ignore 143
local now, core_connect, core_start = core.now, core.connect, core.start

local function pack(...)
  return { n = select("#", ...), ... }
end

-- Polls a started probe between sleeps until it answers or the budget is
-- spent; an abandoned probe is closed by its __gc.
local function poll(p, budget, sleep)
  local due, step = now() + budget, 1
  while true do
    local left = due - now()
    if left <= 0 then return p:expire() end
    sleep(min(step, left))
    step = min(step * 2, 50)
    local r = pack(p:poll(0))
    if r[1] ~= "pending" then return unpack(r, 1, r.n) end
  end
end

local function started(budget, sleep, p, ...)
  if type(p) ~= "userdata" then return p, ... end
  return poll(p, budget, sleep)
end

function M.connect(host, port, budget, close, sleep)
  if not sleep then return core_connect(host, port, budget, close) end
  return started(budget, sleep, core_start(host, port, close))
end

M.bind = core.bind
M.listen = listen.outcomes
M.ipv6 = core.ipv6

return M
