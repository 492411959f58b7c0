--- The verdict: the one place where the outcomes of a probe become its
-- answer. Every transport (the C core, luv handles, OpenResty cosockets)
-- reports raw outcomes, one per address, as pairs of values:
--   state, address
-- where state is true (used there: a connect was accepted, a bind got
-- EADDRINUSE, a listener was found), false (free there: refused, bound,
-- none found) or an error code ("ETIMEDOUT"), and address is the literal
-- tried. A host that did not resolve is the pair nil, code.
--
-- The answer (SPEC "check"): true if any address is used; otherwise an
-- error naming the first address that failed; otherwise false if any
-- address answered; an address of a family this machine lacks (no IPv6)
-- is skipped, and when none is left the answer is an error. Errors are
-- nil, message, code, operation.
local words = require "tcp_port_used.words"

local M = {}

local select, find, type = select, string.find, type
local message, where = words.message, words.where

-- Errors of an IPv6 address that a machine without IPv6 explains.
local NO_FAMILY = { EAFNOSUPPORT = true, EADDRNOTAVAIL = true, ENETUNREACH = true }

local function skipped(code, address, ipv6)
  return NO_FAMILY[code] and find(address, ":", 1, true) ~= nil and not ipv6()
end

-- The operations of a readiness exchange: their failures are the
-- server's doing, never explained by a missing family.
local EXCHANGE = { send = true, receive = true }

-- The rules of SPEC "check", written once for every probe: where they
-- fall for the outcome pairs list[1..n] (state, address), each of
-- operation ops (one for all, or a list by pair): true (one is used),
-- the index of the first failure a missing family does not explain,
-- false (none failed, one is free) or nil (every one was skipped).
local function fall(list, n, ops, ipv6)
  local free, first
  for i = 1, n, 2 do
    local s = list[i]
    if s == true then return true end
    if s == false then
      free = true
    elseif not first then
      local op = ops
      if type(ops) == "table" then op = ops[(i + 1) / 2] end
      if EXCHANGE[op] or not skipped(s, list[i + 1], ipv6) then first = i end
    end
  end
  if first then return first end
  if free then return false end
  return nil
end

local function no_family(op, place)
  return nil, op .. " " .. place .. ": " .. words.NO_FAMILY, "EAFNOSUPPORT", op
end

--- answer(op, host, port, ipv6, state, address, ...): the answer of one
-- probe of operation op ("connect", "bind", "listen") of host:port.
-- ipv6() tells whether this machine has IPv6; it is asked only when an
-- IPv6 address failed in a way a missing family explains.
function M.answer(op, host, port, ipv6, s1, a1, ...)
  if s1 == true then return true end
  if s1 == nil then
    return nil, message("resolve", host or "localhost", a1), a1, "resolve"
  end
  if s1 == false then
    -- (states are never nil, so a missing pair is a nil: no select) one
    -- address, or both loopbacks, free: the usual refused port
    local s2, _, s3 = ...
    if s2 == nil or s2 == false and s3 == nil then return false end
  end
  local outcomes = { s1, a1, ... }
  return M.answer_list(op, host, port, ipv6, outcomes, select("#", ...) + 2)
end

--- answer_list(op, host, port, ipv6, outcomes, n): answer of the n
-- values (state, address pairs) of the list outcomes, which it does not
-- keep: a caller that answers many ports refills one list.
function M.answer_list(op, host, port, ipv6, outcomes, n)
  local r = fall(outcomes, n, op, ipv6)
  if r == true or r == false then return r end
  if r == nil then return no_family(op, where(host, port, outcomes[2])) end
  local code = outcomes[r]
  return nil, message(op, where(host, port, outcomes[r + 1]), code), code, op
end

--- The answer as the public API gives it: true, false [, reason] or nil,
-- err, code (the operation, a fourth value, is for the retry policy only).
function M.public(r, err, code)
  if r == nil then return nil, err, code end
  if r == false and err ~= nil then return false, err end
  return r
end

--- ready(host, port, unix, ipv6, outcomes): the answer of a readiness
-- probe (or a connect probe of a Unix-domain socket) that tried each
-- address in turn and none was ready. Each outcome is a table:
--   { answered = true, reason = ... }   the server said "not ready"
--   { refused = true, address = ... }   nothing listens there
--   { code =, op =, address =, detail = }  the probe failed
-- The answer (SPEC "readiness"): false with the reason of the first that
-- answered "not ready"; otherwise the rules of check (fall) over the
-- rest, a refused address being a free one. unix: the socket's path,
-- which names the place in messages instead of host:port.
function M.ready(host, port, unix, ipv6, outcomes)
  local n = #outcomes
  local list, ops = {}, {}
  for i = 1, n do
    local o = outcomes[i]
    if o.answered then return false, o.reason end
    if o.refused then list[2 * i - 1] = false else list[2 * i - 1] = o.code end
    list[2 * i], ops[i] = o.address, o.op or "connect"
  end
  local r = fall(list, 2 * n, ops, ipv6)
  if r == false then return false end
  if r == nil then return no_family("connect", where(host, port, outcomes[1].address)) end
  local o = outcomes[(r + 1) / 2]
  local msg = message(o.op, unix or where(host, port, o.address), o.code)
  if o.detail then msg = msg .. " (" .. o.detail .. ")" end
  return nil, msg, o.code, o.op
end

--- any mode: in use if either probe says so; an error where neither does
-- and one failed (the connect error first), else free.
function M.any(r, err, code, op, b, berr, bcode, bop)
  if r == true or b == true then return true end
  if r == nil then return nil, err, code, op end
  if b == nil then return nil, berr, bcode, bop end
  return false
end

return M
