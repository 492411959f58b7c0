--- find_free: a TCP (or UDP) port that nothing holds now, by bind
-- probes. The answer can be stale by the time the caller binds it (see
-- docs/many-and-free.md, "Free ports"): a caller that can should bind port 0 itself
-- and keep the socket.
local core = require "tcp_port_used.core"
local args = require "tcp_port_used.args"
local verdict = require "tcp_port_used.verdict"
local words = require "tcp_port_used.words"

local M = {}

local type = type
local core_bind, core_bind_port0 = core.bind, core.bind_port0

-- Where the kernel's pick falls on an excluded port, it is asked again.
local PORT0_TRIES = 64

local KEYS = args.OPTIONS.find_free
local api = require "tcp_port_used.api"
local FROM, TO = api.option("find_free", "from").default, api.option("find_free", "to").default

local function options(fname, o)
  if o == nil then o = {} end
  if type(o) ~= "table" then args.fail(fname, 1, "options must be a table or nil", o, 4) end
  args.known(fname, 1, o, KEYS)
  local host, proto = args.host(fname, 1, o.host), args.proto(fname, 1, o.proto)
  local from, to = o.from, o.to
  if from ~= nil or to ~= nil then
    from = from == nil and FROM or args.port(fname, 1, from, "from")
    to = to == nil and TO or args.port(fname, 1, to, "to")
    if to < from then
      args.fail(fname, 1, "to must not be below from (" .. from .. ")", to, 4)
    end
  end
  local exclude = {}
  if o.exclude ~= nil then
    if type(o.exclude) ~= "table" then
      args.fail(fname, 1, "exclude must be a list of ports", o.exclude, 4)
    end
    for i, p in ipairs(o.exclude) do
      exclude[args.port(fname, 1, p, "exclude[" .. i .. "]")] = true
    end
  end
  return host, from, to, exclude, proto
end

-- true (held), false (free on every address) or nil, err, code. Without
-- a host a port is free only when both wildcards can bind it, as a
-- server listening on every address would.
local function held(host, port, ipv6, proto)
  if host then
    return verdict.answer("bind", host, port, core.ipv6, core_bind(host, port, proto))
  end
  local r, err, code = verdict.answer("bind", "0.0.0.0", port, core.ipv6,
    core_bind("0.0.0.0", port, proto))
  if r ~= false or not ipv6 then return r, err, code end
  return verdict.answer("bind", "::", port, core.ipv6, core_bind("::", port, proto))
end

--- find_free{ host =, from =, to =, exclude =, proto = }: a port of proto
-- ("tcp", default, or "udp": one no UDP socket holds) free now on host
-- (every local address when omitted). With a range (from defaults to
-- 1024, to to 65535) the lowest free port in it not excluded; without,
-- the port the kernel picks. nil, err, code when the range is exhausted
-- or a probe fails.
function M.find_free(o)
  local host, from, to, exclude, proto = options("find_free", o)
  if not from then
    for _ = 1, PORT0_TRIES do
      local p, code, address = core_bind_port0(host, proto)
      if not p then
        local op = address and "bind" or "resolve"
        return nil, words.message(op, words.where(host or "*", 0, address), code), code, op
      end
      if not exclude[p] then return p end
    end
    return nil, words.excluded_only(host), "EADDRINUSE", "bind"
  end
  local ipv6 = host == nil and core.ipv6()
  for p = from, to do
    if not exclude[p] then
      local r, err, code = held(host, p, ipv6, proto)
      if r == false then return p end
      if r == nil then return nil, err, code end
    end
  end
  return nil, words.no_free_port(host, from, to), "EADDRINUSE", "bind"
end

return M
