--- The one retry loop behind every wait, on every host. It knows nothing
-- of sockets or schedulers: the caller injects `probe(port, attempt_ms)`
-- (returning true / false [, reason] / nil, err, code, op), `sleep(ms)`
-- and `now()`. A readiness probe's "not ready" and EPROTO are retried
-- like any other answer that is not yet the one wanted.
-- Pure Lua, so that the luv adapter can use it without the C core. Which
-- errors end a wait at once is policy.lua's to say.
local policy = require "tcp_port_used.policy"
local explain = require "tcp_port_used.explain"

local M = {}

local min, max = math.min, math.max
local permanent, cut_short = policy.permanent, policy.cut_short

-- The default interval when retry_ms is not given: an eighth of the time
-- waited so far, from 5 ms up to 250 ms. A server that is up after 50 ms
-- is seen within about 6 ms; after 2 s the wait probes 4 times a second.
M.MIN_INTERVAL, M.MAX_INTERVAL = 5, 250
-- A retry_ms below 1 (0 included) is taken as 1: probes back to back
-- would spin the thread and flood the server, and no caller means that.
M.MIN_RETRY = 1

function M.interval(retry_ms, elapsed_ms)
  if retry_ms then return max(retry_ms, M.MIN_RETRY) end
  return min(M.MAX_INTERVAL, max(M.MIN_INTERVAL, elapsed_ms / 8))
end

--- o: normalized wait options (ports, in_use, retry_ms, timeout_ms,
-- attempt_ms, on_retry). Returns true; or at the deadline nil, msg,
-- "ETIMEDOUT", explanation, where explanation is what
-- explain(o, port, last_probe, in_use) says of the first port still
-- pending from its last probe (no probe more: see explain.lua; explain
-- defaults to the one without socket tables) and msg ends with its text;
-- or nil, err, code for a permanent error (policy.permanent).
function M.wait(o, probe, sleep, now, explain_port)
  local start = now()
  local deadline = start + o.timeout_ms
  local want, pending = o.in_use, {}
  for i, p in ipairs(o.ports) do pending[i] = p end
  local attempt = 0
  local prev_err, prev_code -- the last error (or reason) of the round before
  local last = {} -- per port, the values of its last probe that said something
  while true do
    attempt = attempt + 1
    local last_err, last_code
    local i = 1
    while i <= #pending do
      -- The final probe, made at the deadline, still gets a millisecond.
      local budget = min(o.attempt_ms, max(deadline - now(), 1))
      local port = pending[i]
      local r, err, code, op = probe(port, budget)
      if r == want then
        table.remove(pending, i)
      else
        if r == nil then
          if permanent(op, code) then return nil, err, code end
          if prev_err and cut_short(code, budget, o.attempt_ms) then
            last_err, last_code = prev_err, prev_code
          else
            last_err, last_code = err, code
            last[port] = { r, err, code, op }
          end
        else
          -- false [, a "not ready" reason, no code] or true (a free wait)
          if err ~= nil then last_err, last_code = err, nil end
          last[port] = { r, err }
        end
        i = i + 1
      end
    end
    if #pending == 0 then return true end
    prev_err, prev_code = last_err, last_code
    local t = now()
    local left = deadline - t
    if left <= 0 then
      local port = pending[1]
      local e = (explain_port or M.explain)(o, port, last[port] or { want }, want)
      return nil, explain.timeout_message(o, port, #pending - 1, e),
        "ETIMEDOUT", e
    end
    local wait = min(M.interval(o.retry_ms, t - start), left)
    if o.on_retry then
      local waiting = {}
      for k, p in ipairs(pending) do waiting[k] = p end
      o.on_retry { attempt = attempt, elapsed_ms = t - start, wait_ms = wait,
                   ports = waiting, err = last_err, code = last_code }
    end
    sleep(wait)
  end
end

-- The explanation of a timeout where the caller reads no socket tables.
M.explain = explain.explainer(nil)

return M
