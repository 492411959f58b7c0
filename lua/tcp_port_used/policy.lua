--- The policy: which failed probes a wait retries, decided by (operation,
-- code) and never by the text of a message; and how an accepted connect
-- probe is closed.
local M = {}

-- Codes that retrying cannot mend, whatever the operation. Everything
-- else (a name that does not resolve yet while a container starts,
-- unreachable, a per-attempt timeout, EMFILE) is retried.
local PERMANENT = {
  EACCES = true, EPERM = true, EAFNOSUPPORT = true, EINVAL = true, ENOTSUP = true,
  EAI_FAMILY = true, EAI_SERVICE = true, EAI_BADFLAGS = true,
}

-- Codes whose meaning depends on the operation: the host is not an
-- address of this machine for bind and listen, but for connect the same
-- EADDRNOTAVAIL means the ephemeral ports ran out, which passes.
local PERMANENT_IN = {
  bind = { EADDRNOTAVAIL = true },
  listen = { EADDRNOTAVAIL = true },
  -- a Unix-domain socket's path too long for a socket address (a missing
  -- socket file, ENOENT, passes: the server has not made it yet)
  connect = { ENAMETOOLONG = true },
}

-- The exchange of a readiness probe: what a server that is still
-- starting says or does there (a reset, a close, EPROTO from a program
-- that held the port before the server's own) can change, so nothing
-- sent or received ends a wait.
local EXCHANGE = { send = true, receive = true }

--- Whether a failed attempt says nothing new: a per-attempt timeout of
-- an attempt the wait's deadline cut below attempt_ms (the final probe of
-- a PostgreSQL wait rarely gets its backend forked in a millisecond), so
-- the answer of the round before stands.
function M.cut_short(code, budget, attempt_ms)
  return code == "ETIMEDOUT" and budget < attempt_ms
end

--- Whether a wait gives up at once on code from operation op.
function M.permanent(op, code)
  if EXCHANGE[op] then return false end
  if PERMANENT[code] then return true end
  local t = PERMANENT_IN[op]
  return t ~= nil and t[code] == true
end

-- How an accepted probe is closed (SPEC: "a probe leaves nothing behind").
-- A FIN, which servers do not log, until this Lua state has made about
-- 100 connected probes in the last second; then resets, so that TIME_WAIT
-- entries cannot exhaust the ephemeral ports. A sliding estimate over two
-- one-second windows, on a monotonic clock in milliseconds chosen once,
-- at the first probe: the C core's, else luv's (tcp_port_used.uv without
-- the core), else the wall clock (never CPU time, which stands still
-- while a probe waits).
local GRACEFUL_PER_SECOND = 100
local start, prev, cur = 0, 0, 0
local now

local function clock()
  local ok, core = pcall(require, "tcp_port_used.core")
  if ok and type(core) == "table" and core.now then return core.now end
  local vim_ = rawget(_G, "vim")
  local uv = vim_ and (vim_.uv or vim_.loop)
  if not uv then
    local has_luv, luv = pcall(require, "luv")
    uv = has_luv and luv or nil
  end
  if uv and uv.hrtime then
    local hrtime = uv.hrtime
    return function() return hrtime() / 1e6 end
  end
  return function() return os.time() * 1000 end
end

local function rate()
  if not now then
    now = clock()
    start = now()
  end
  local t = now()
  local elapsed = t - start
  if elapsed >= 1000 then
    prev = elapsed >= 2000 and 0 or cur
    cur = 0
    start = elapsed >= 2000 and t or start + 1000
    elapsed = t - start
  end
  return prev * (1 - elapsed / 1000) + cur
end

--- The close of the next connect probe for option close ("auto",
-- "graceful", "reset"): "graceful" or "reset".
function M.close(close)
  if close ~= "auto" then return close end
  return rate() >= GRACEFUL_PER_SECOND and "reset" or "graceful"
end

--- Counts one connected probe (an answer true from a connect).
function M.connected()
  rate()
  cur = cur + 1
end

return M
