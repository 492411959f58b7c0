--- check_many: the state of many ports at once. Connect probes run in C
-- with many in flight (csrc/many.c); bind probes answer at once, so they
-- run one after another; listen mode asks the kernel once per address
-- family. UDP (proto "udp") has modes bind and listen. Each port's
-- outcomes go through the verdict.
local core = require "tcp_port_used.core"
local args = require "tcp_port_used.args"
local verdict = require "tcp_port_used.verdict"
local policy = require "tcp_port_used.policy"

local M = {}

local type, floor = type, math.floor
local unpack = table.unpack or unpack -- luacheck: ignore 143
local core_many, core_bind, ipv6 = core.many, core.bind, core.ipv6
local answer, any, connected = verdict.answer, verdict.any, policy.connected

local function is_port(p)
  return type(p) == "number" and p >= 1 and p <= 65535 and p == floor(p)
end

-- The list from..to; `level` puts the error at the public caller.
local function span(fname, from_argn, to_argn, from, to, level)
  if not is_port(from) then
    args.fail(fname, from_argn, "from must be an integer in 1..65535", from, level)
  end
  if not is_port(to) then
    args.fail(fname, to_argn, "to must be an integer in 1..65535", to, level)
  end
  if to < from then
    args.fail(fname, to_argn, "to must not be below from (" .. from .. ")", to, level)
  end
  local list = {}
  for p = from, to do list[p - from + 1] = p end
  return list
end

--- range(from, to): the list of ports from..to, for check_many.
function M.range(from, to)
  local list = span("range", 1, 2, from, to, 4)
  return list
end

-- A list as given, or the list of a { from =, to = } range. The name of
-- a bad element is only built once it has to be shown.
local function port_list(fname, v)
  if type(v) == "table" and v[1] == nil and (v.from ~= nil or v.to ~= nil) then
    local list = span(fname, 1, 1, v.from, v.to, 5)
    return list
  end
  if type(v) ~= "table" or #v == 0 then
    args.fail(fname, 1, "ports must be a non-empty list of ports or { from =, to = }", v, 4)
  end
  for i = 1, #v do
    if not is_port(v[i]) then args.port(fname, 1, v[i], "ports[" .. i .. "]") end
  end
  return v
end

local OPTS = args.OPTIONS.check_many
local TIMEOUT = require("tcp_port_used.api").option("check_many", "timeout_ms").default

local function options(fname, host, opts)
  args.host(fname, 2, host)
  if opts == nil then
    local proto = args.proto(fname, 3, nil)
    return { timeout_ms = TIMEOUT, mode = args.mode(fname, 3, nil, proto), close = args.close(fname, 3, nil),
             proto = proto }
  end
  if type(opts) ~= "table" then args.fail(fname, 3, "opts must be a table or nil", opts, 4) end
  args.known(fname, 3, opts, OPTS)
  local proto = args.proto(fname, 3, opts.proto)
  local o = {
    timeout_ms = args.ms(fname, 3, opts.timeout_ms, "timeout_ms", TIMEOUT),
    mode = args.mode(fname, 3, opts.mode, proto),
    proto = proto,
    close = args.close(fname, 3, opts.close),
    max_inflight = opts.max_inflight,
  }
  if o.max_inflight ~= nil and not (type(o.max_inflight) == "number" and o.max_inflight >= 1
      and o.max_inflight == floor(o.max_inflight) and o.max_inflight < 2 ^ 31) then
    args.fail(fname, 3, "max_inflight must be a positive integer", o.max_inflight, 4)
  end
  return o
end

--- How each mode answers for a list: used, errors, codes (or nil, err,
-- code when the host itself fails). Every port's answer is the verdict's
-- (verdict.lua), as check would give it.
M.modes = {}

-- Fills used, errs, codes for port p from an answer.
local function record(used, errs, codes, p, r, err, code)
  used[p], errs[p], codes[p] = r, err, code
end

function M.modes.connect(list, host, o)
  local outcomes, rcode = core_many(host, list, o.timeout_ms, policy.close(o.close), o.max_inflight)
  if not outcomes then return answer("connect", host, list[1], ipv6, nil, rcode) end
  local used, errs, codes = {}, {}, {}
  for i = 1, #list do
    local p = list[i]
    local r, err, code = answer("connect", host, p, ipv6, unpack(outcomes[p]))
    if r == true then connected() end
    record(used, errs, codes, p, r, err, code)
  end
  return used, errs, codes
end

function M.modes.bind(list, host, o)
  local used, errs, codes, proto = {}, {}, {}, o.proto
  for i = 1, #list do
    local p = list[i]
    local r, err, code, op = answer("bind", host, p, ipv6, core_bind(host, p, proto))
    if op == "resolve" then return nil, err, code end
    record(used, errs, codes, p, r, err, code)
  end
  return used, errs, codes
end

-- In use if either probe says so; an error only where neither does and
-- one failed, as check answers in this mode.
function M.modes.any(list, host, o)
  local used, errs, codes = M.modes.connect(list, host, o)
  if not used then return nil, errs, codes end
  for i = 1, #list do
    local p = list[i]
    if used[p] ~= true then
      local b, berr, bcode = answer("bind", host, p, ipv6, core_bind(host, p))
      record(used, errs, codes, p,
        any(used[p], errs[p], codes[p], used[p] == nil and "connect" or nil, b, berr, bcode, "bind"))
    end
  end
  return used, errs, codes
end

-- One kernel query per address family, however many ports.
function M.modes.listen(list, host, o)
  return require("tcp_port_used.listen").check_many(list, host, o.proto)
end

--- check_many(ports [, host [, opts]]): ports is a list or { from =, to = };
-- opts: timeout_ms (per attempt, default 1000), mode, close, max_inflight,
-- proto ("tcp" or "udp"; UDP in modes bind, the default there, and listen).
-- Returns used, errors, codes: used[port] is true or false; for a port
-- whose probe failed used[port] is nil and errors[port], codes[port] say
-- why. errors and codes are empty tables when nothing failed. A host that
-- does not resolve returns nil, err, code for the whole call.
function M.check_many(ports, host, opts)
  local list = port_list("check_many", ports)
  local o = options("check_many", host, opts)
  local used, errs, codes = M.modes[o.mode](list, host, o)
  return used, errs, codes
end

return M
