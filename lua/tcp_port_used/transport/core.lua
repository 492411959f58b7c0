--- The C core's transport: connect probes through csrc/connect.c (blocking
-- for at most the budget, or started and polled between the caller's
-- sleeps so that a yielding wait never blocks), bind probes and listen
-- mode through tcp_port_used.listen (the two for TCP or UDP), and the
-- streams of readiness exchanges through csrc/stream.c (the same pacing).
-- It reports outcomes; it decides nothing (see probe.lua).
local core = require "tcp_port_used.core"
local listen = require "tcp_port_used.listen"
local stream = require "tcp_port_used.transport.stream"

local M = {}

local type, min = type, math.min
local pack, unpack = require("tcp_port_used.pack").pack, require("tcp_port_used.pack").unpack
local now, core_connect, core_start = core.now, core.connect, core.start
local core_stream, core_stream_unix, core_resolve = core.stream, core.stream_unix, core.resolve

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

--- Streams -----------------------------------------------------------------

local PENDING = {}

-- Calls try(self, ms) until it answers anything but PENDING or the
-- stream's deadline passes (nil, "ETIMEDOUT"). Without a sleep, try may
-- block in C for the time left; with one, it is asked not to block, and
-- the stream sleeps 1, 2, 4 ... 50 ms between calls, as the wait chose.
local function pace(self, try)
  local sleep, step = self.sleep, 1
  while true do
    local left = self.deadline - now()
    if left < 0 then left = 0 end
    local a, b = try(self, sleep and 0 or left)
    if a ~= PENDING then return a, b end
    if left <= 0 then return nil, "ETIMEDOUT" end
    if sleep then
      sleep(min(step, left))
      step = min(step * 2, 50)
    end
  end
end

local function try_connect(self, ms)
  local state = self.ud:connected(ms)
  if state == "pending" then return PENDING end
  return state
end

local function try_read(self, ms)
  local data, code = self.ud:recv(ms)
  if data == false then return PENDING end
  return data, code
end

local function try_write(self, ms)
  local n, code = self.ud:send(self.out, self.at, ms)
  if not n then return nil, code end
  self.at = self.at + n
  if self.at > #self.out then return true end
  return PENDING
end

local Stream = stream.class {
  _read = function(self) return pace(self, try_read) end,
  _write = function(self, data)
    self.out, self.at = data, 1
    return pace(self, try_write)
  end,
  _close = function(self, how) self.ud:close(how) end,
}

--- open(address, port, unix, deadline, sleep): a stream connected to
-- address:port, or to the Unix-domain socket at path unix; else nil and
-- the outcome: false (refused) or a code. The connect and everything
-- read and sent on the stream end by deadline (core.now's clock).
function M.open(address, port, unix, deadline, sleep)
  local ud, state
  if unix then
    ud, state = core_stream_unix(unix)
  else
    ud, state = core_stream(address, port)
  end
  local s = { ud = ud, sleep = sleep, deadline = deadline }
  if state == "pending" then
    local r, code = pace(s, try_connect)
    -- a connect the deadline cut short is the code pace gives
    if r == nil then state = code else state = r end
    if state ~= true then ud:close() end
  end
  if state ~= true then return nil, state end
  return stream.new(Stream, s)
end

--- The addresses a probe of host tries (nil: both loopbacks), or nil, code.
function M.resolve(host)
  local list, code = core_resolve(host)
  if not list then return nil, code end
  for i = 1, #list do list[i] = list[i].address end
  return list
end

M.now = now
M.bind = core.bind
M.listen = listen.outcomes
M.ipv6 = core.ipv6

return M
