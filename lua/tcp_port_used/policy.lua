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
-- one-second windows. The clock is the caller's (see M.clock).
local GRACEFUL_PER_SECOND = 100
local start, prev, cur = 0, 0, 0
local now = os.clock

--- Sets the monotonic clock (milliseconds) the rate is measured with.
function M.clock(f)
  now = f
end

local function rate()
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
