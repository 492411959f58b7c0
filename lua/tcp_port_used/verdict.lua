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

local select, find = select, string.find
local message, where = words.message, words.where

-- Errors of an IPv6 address that a machine without IPv6 explains.
local NO_FAMILY = { EAFNOSUPPORT = true, EADDRNOTAVAIL = true, ENETUNREACH = true }

local function skipped(code, address, ipv6)
  return NO_FAMILY[code] and find(address, ":", 1, true) ~= nil and not ipv6()
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
  -- (states are never nil, so a missing second pair is a nil: no select)
  if s1 == false and (...) == nil then return false end
  local n = select("#", ...)
  local outcomes = { s1, a1, ... }
  local free, first_address
  for i = 1, n + 2, 2 do
    local s, a = outcomes[i], outcomes[i + 1]
    if s == true then return true end
    if s == false then
      free = true
    elseif not skipped(s, a, ipv6) then
      -- the first failure names the answer, unless another address is used
      if not first_address then first_address = i end
    end
  end
  if first_address then
    local code = outcomes[first_address]
    return nil, message(op, where(host, port, outcomes[first_address + 1]), code), code, op
  end
  if free then return false end
  return nil, op .. " " .. where(host, port, a1) .. ": " .. words.NO_FAMILY, "EAFNOSUPPORT", op
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
-- answered "not ready"; otherwise an error naming the first address that
-- failed; otherwise false if any refused; an IPv6 address of a family
-- this machine lacks is skipped, as in check. unix: the socket's path,
-- which names the place in messages instead of host:port.
function M.ready(host, port, unix, ipv6, outcomes)
  local n = #outcomes
  for i = 1, n do
    local o = outcomes[i]
    if o.answered then return false, o.reason end
  end
  local refused
  for i = 1, n do
    local o = outcomes[i]
    if o.refused then
      refused = true
    elseif not (o.op == "connect" and skipped(o.code, o.address, ipv6)) then
      local msg = message(o.op, unix or where(host, port, o.address), o.code)
      if o.detail then msg = msg .. " (" .. o.detail .. ")" end
      return nil, msg, o.code, o.op
    end
  end
  if refused then return false end
  return nil, "connect " .. where(host, port, outcomes[1].address) .. ": " .. words.NO_FAMILY,
    "EAFNOSUPPORT", "connect"
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
